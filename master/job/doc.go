// Package job accepts package jobs and sees them through: a job is files
// plus metadata (job.json), submitted over HTTP, over SSH or by dropping a
// directory into a farm's incoming directory; it is stored, fanned out to
// one chain of builds per platform of its farm, and published once every
// platform has succeeded.
//
// On disk a job lives in BASEDIR/jobs/KEY/: input/ holds the submitted
// files (job.json among them), repo/PLATFORM/ the results that the builds
// on PLATFORM uploaded with job_upload() (what later packages and the
// publish step read), and publish.log the publish step's output.
package job
