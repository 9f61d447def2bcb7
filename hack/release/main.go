package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	var o options
	fs := flag.NewFlagSet("release", flag.ContinueOnError)
	fs.StringVar(&o.version, "version", "", "The release version, such as v0.1.0 (the Makefile passes v$(cat VERSION)).")
	fs.StringVar(&o.registry, "registry", defaultRegistry, "Where the images are pushed: <registry>/tenancy-manager:<version>.")
	fs.StringVar(&o.images, "images", "bin/images", "The directory `make image` wrote.")
	fs.StringVar(&o.out, "out", "dist", "The directory to write the release into.")
	fs.StringVar(&o.repo, "repo", ".", "The repository root (config/ and charts/ are read from it).")
	if err := fs.Parse(os.Args[1:]); err != nil {
		os.Exit(2)
	}
	files, err := o.release()
	if err != nil {
		fmt.Fprintln(os.Stderr, "release:", err)
		os.Exit(1)
	}
	for _, f := range files {
		fmt.Println(f)
	}
}
