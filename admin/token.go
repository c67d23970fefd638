package admin

import (
	"fmt"
	"os"
	"strings"
)

// ReadTokenFile returns the token stored in path: the file's content without surrounding
// whitespace (as serve reads it).
func ReadTokenFile(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading API token file: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return "", fmt.Errorf("API token file %s is empty: write the token in it", path)
	}
	if strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("API token file %s holds more than one word: it must hold only the token", path)
	}
	return tok, nil
}
