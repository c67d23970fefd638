// Package images owns rackboot's OS image catalog: the images operators add (from an
// http(s) or file URL, or uploaded through the admin API), their cached, verified copies
// under DATA_DIR/images, and the HTTP route that serves them to agents.
//
// # Lifecycle
//
// An image is a catalog record in the inventory (inventory.Image) plus one file,
// DATA_DIR/images/NAME. Add records the image as pending and returns; a worker started
// by Start downloads it into DATA_DIR/images/.NAME.part while hashing it, and only when
// the SHA-256 matches the one the operator gave is the file renamed into place and the
// image marked ready. A wrong checksum marks it failed with both sums in the error and
// deletes what was downloaded: a failed or pending image is never offered to an agent
// (its URL answers 404 or 503), so a wrong checksum can never reach a disk. An upload
// (Upload, the admin API's PUT) goes through the same temporary file and check.
//
// Downloads resume: a transfer cut off is retried (up to three attempts, with HTTP
// Range from where it stopped when the server allows it), and images still pending when
// rackboot stopped are downloaded again when it starts. An upload interrupted by a
// restart cannot be resumed by the server and is marked failed, saying to upload again.
// On start, a ready image whose file is missing or has the wrong size is marked failed
// too (its full checksum is checked again only with Config.VerifyOnStart, since that
// reads every image; the agent checks the checksum of every byte it receives anyway).
//
// # Formats and qcow2
//
// The format is read from the bytes once the file is verified, never from its name:
// qcow2, gzip, zstd and xz by their magic numbers, raw otherwise (DetectFormat). A
// compressed file is looked into too: a gzip'd qcow2 would otherwise reach a disk as
// container bytes, so it is refused, like VMDK, VHDX and VDI files, with the command
// that converts them. A format the operator gave is only a check: bytes of another
// format fail the image. Format records the served file's format, SourceFormat the
// added one.
//
// A qcow2 image (v2 or v3, compressed clusters included; no backing file, encryption
// or external data file, which the qcow2 reader refuses with errors naming the fact,
// shown as the image's error with what to do) is converted once, on the server, after
// its checksum verified: the worker streams its guest-visible bytes (package qcow2)
// through a zstd encoder into DATA_DIR/images/.NAME.conv, hashing what it writes,
// then renames it to NAME and records the served file's sha256 (ServedSHA256), size
// and format (zstd) beside the operator's sha256 of the qcow2 (SHA256, the image's
// identity in provisioning requests), and the disk size. Plans carry the served
// file's sum, and the agent checks every byte it receives against it, as for any
// image. A virtual size above Config.MaxDiskSize is refused before any work (a header
// may claim 2^61 bytes). Progress (Phase convert, BytesDone of BytesTotal guest
// bytes) shows in the record, as a download's does.
//
// Why the server converts instead of agents reading qcow2: a qcow2 file cannot be
// streamed. Its L1/L2 tables say where each cluster lives, and qemu-img writes them
// and the data in any order (the tables often at the end), so a reader needs random
// access to the whole file, which an agent writing a disk from an HTTP stream does
// not have without holding the image in RAM or making a Range request per cluster.
// Converting once costs the server CPU and disk space for one compressed copy; in
// exchange agents keep one simple, resumable, sequential path (HTTP Range, sha256
// of every byte, zstd), the checksum an agent verifies is of exactly the bytes it is
// sent, and a malformed qcow2 fails on the server, visibly, before any host is
// involved. zstd at its fastest level because the operator waits for the conversion
// and zeros, most of a cloud image's disk, cost next to nothing at any level.
//
// A conversion interrupted by a restart is redone at start: the image stays pending
// in phase convert, its verified .NAME.part is hashed again and converted (an URL
// image whose .part is gone or changed is downloaded again; an upload's cannot be and
// fails, saying to upload again). An upload's conversion runs in the worker: the PUT
// answers once the bytes are verified, with the image pending in phase convert.
//
// # Checksums as people publish them
//
// AddRequest.SHA256URL names a checksum file (SHA256SUMS, Fedora's CHECKSUM; GNU or
// BSD lines, clearsigned or not; ParseSHA256Sums) instead of a bare sum. Add fetches
// it before it records anything and takes the line for the image's file name (the
// base name of the URL's path, or SHA256Name for an upload), so a file that does not
// list the image is the caller's error at once; the URL is kept in the record.
//
// Remove refuses an image a host uses (inventory.DeleteImage checks and deletes in one
// transaction), then deletes the file.
//
// # HTTP
//
//	GET|HEAD /images/NAME   the image file, with Range, If-Range and an ETag of its sha256
//
// Serving uses http.ServeContent, so agents can resume with Range requests. Which Range
// headers reach it is decided in front of the listener (httplimit): one range, or a
// few sorted and not overlapping; others get 416 there. There is no
// whole-transfer deadline: each write pushes the connection's write deadline
// StallTimeout ahead, so only a transfer that stops moving is cut. Config.Authorize
// decides who may fetch (rackboot serve allows the hosts that are provisioning with the
// image); every GET is recorded on that host's timeline as image.fetch with the bytes
// sent and the range asked for.
package images
