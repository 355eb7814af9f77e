package proto

// Ops sent by the master to the worker.
const (
	OpPrint             = "print"
	OpKeepalive         = "keepalive"
	OpGetWorkerInfo     = "get_worker_info"
	OpSetWorkerSettings = "set_worker_settings"
	OpStartCommand      = "start_command"
	OpInterruptCommand  = "interrupt_command"
	OpShutdown          = "shutdown"
)

// Ops sent by the worker to the master about a running command.
const (
	OpUpdate                = "update"
	OpComplete              = "complete"
	OpUploadFileWrite       = "update_upload_file_write"
	OpUploadFileClose       = "update_upload_file_close"
	OpUploadFileUtime       = "update_upload_file_utime"
	OpUploadDirectoryWrite  = "update_upload_directory_write"
	OpUploadDirectoryUnpack = "update_upload_directory_unpack"
	OpReadFile              = "update_read_file"
	OpReadFileClose         = "update_read_file_close"
	OpResponse              = "response"
)

// Command names carried by start_command.
const (
	CmdShell           = "shell"
	CmdUploadFile      = "upload_file"
	CmdUploadDirectory = "upload_directory"
	CmdDownloadFile    = "download_file"
	CmdMkdir           = "mkdir"
	CmdRmdir           = "rmdir"
	CmdCpdir           = "cpdir"
	CmdStat            = "stat"
	CmdGlob            = "glob"
	CmdListdir         = "listdir"
	CmdRmfile          = "rmfile"
)

// Commands lists every command a worker implements, with the version that
// get_worker_info reports for it (Buildbot 3.7 reports "3.1" for all, and
// masters compare against these versions to choose arguments).
var Commands = map[string]string{
	CmdShell: "3.1", "uploadFile": "3.1", CmdUploadFile: "3.1",
	"uploadDirectory": "3.1", CmdUploadDirectory: "3.1",
	"downloadFile": "3.1", CmdDownloadFile: "3.1",
	CmdMkdir: "3.1", CmdRmdir: "3.1", CmdCpdir: "3.1", CmdStat: "3.1",
	CmdGlob: "3.1", CmdListdir: "3.1", CmdRmfile: "3.1",
}

// Keys of update entries (the first element of each [key, value] pair).
const (
	UpdStdout        = "stdout"
	UpdStderr        = "stderr"
	UpdHeader        = "header"
	UpdLog           = "log"
	UpdRC            = "rc"
	UpdElapsed       = "elapsed"
	UpdFiles         = "files"
	UpdStat          = "stat"
	UpdFailureReason = "failure_reason"
)

// DefaultNewlineRE is the newline_re Buildbot masters send in
// set_worker_settings: CRLF, lone CR, cursor moves, clear-screen and
// backspace runs all end a line.
const DefaultNewlineRE = `(\r\n|\r(?=.)|\033\[u|\033\[[0-9]+;[0-9]+[Hf]|\033\[2J|\x08+)`

// Default worker settings, as a Buildbot master sends them.
const (
	DefaultMaxLineLength = 4096
	DefaultBufferSize    = 65536
	DefaultBufferTimeout = 5.0 // seconds
)
