package main

import (
	"encoding/json"
	"io"
	"sort"
	"strings"
)

func writeIndentedJSON(w io.Writer, v any) error {
	buf, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	_, err = w.Write(append(buf, '\n'))
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func formatLabels(m map[string]string) string {
	return joinSorted(m, ",")
}

func formatFields(m map[string]string) string {
	return joinSorted(m, " ")
}

func joinSorted(m map[string]string, sep string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + "=" + m[k]
	}
	return strings.Join(parts, sep)
}
