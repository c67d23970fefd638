package controllers

import (
	"bytes"
	"encoding/json"
	"fmt"

	infrav1 "github.com/rackboot/rackboot/api/v1alpha1"
	"github.com/rackboot/rackboot/internal/netconfig"
)

// NetworkSpec converts a RackbootMachine's spec.network to rackboot's own spec. The two
// have the same JSON (TestNetworkSpecConversion checks every field both ways), so the
// conversion goes through it and a field added to one but not the other is an error
// here, not a silent loss.
func NetworkSpec(n *infrav1.NetworkSpec) (*netconfig.Spec, error) {
	if n == nil {
		return nil, nil
	}
	b, err := json.Marshal(n)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var s netconfig.Spec
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("spec.network: %w", err)
	}
	return &s, nil
}
