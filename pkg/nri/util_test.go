package nri

import "fmt"

func sprintf(format, bin string) string { return fmt.Sprintf(format, bin) }
