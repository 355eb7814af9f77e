// Package artifact keeps the files builds upload to the master by their
// content, and expires them.
//
// Every file a build records as an artifact (upload, upload_many,
// upload_dir, job_upload) is also kept as a blob named by its SHA-256 in
// BASEDIR/artifacts/sha256/XX/HEX, where XX is the first two hex digits:
// the artifact's row points at the blob, so a later upload over the same
// master path does not change what an older build's download returns,
// and two builds that upload the same bytes share one blob.
//
// A Janitor enforces the artifact_retention() policies: it deletes the
// artifact rows of builds beyond them and the blobs no row references any
// more.
package artifact
