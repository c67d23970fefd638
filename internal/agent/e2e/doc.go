// Package e2e holds the agent's end-to-end test: the Debian kernel booted in QEMU with
// the initramfs rackboot builds (bootenv), the agent as its PID 1, against a stand-in of
// the server's agent API inside a lab network namespace. It is a package of its own so
// the agent's unit tests do not depend on the lab.
package e2e
