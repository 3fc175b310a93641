//go:build !unix

package main

import "time"

// processCPU is not measured here: benchmarks report CPU ratios of 0.
func processCPU() time.Duration { return 0 }
