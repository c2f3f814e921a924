package ocistate_test

import (
	"fmt"
	"strings"

	"github.com/ocisnap/ocisnap/pkg/ocistate"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func ExampleContainer_Annotation() {
	state, err := ocistate.ReadState(strings.NewReader(`{"ociVersion":"1.0.2","id":"c1","status":"stopped","bundle":"/run/c1",
		"annotations":{"io.kubernetes.container.name":"db","io.ocisnap.export":"/var/lib/ocisnap/pod.tar","io.ocisnap.export.db":"/var/lib/ocisnap/db.tar"}}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	if !ocistate.HasAny(state.Annotations, "io.ocisnap.") {
		return // nothing for us: exit at once
	}
	c := &ocistate.Container{State: state, Name: "db"}
	dst, _ := c.Annotation("io.ocisnap.export")
	fmt.Println(state.Status == specs.StateStopped, dst)
	// Output: true /var/lib/ocisnap/db.tar
}
