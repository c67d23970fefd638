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
