// Package packaging holds what a rackboot install carries besides the binary, as make dist
// packages it: the systemd unit (rackboot.service) and the commented default
// /etc/rackboot/config.yaml (config.yaml). Its tests check the artifacts of `make dist`
// (hack/dist lays them out under dist/) the way an operator uses them: the .deb installed
// into a fresh root with dpkg, the unit checked by systemd-analyze, the static binaries
// run, the OCI image read back by go-containerregistry and skopeo, and the clusterctl
// provider repository used by the real clusterctl against envtest. Nothing imports it.
package packaging
