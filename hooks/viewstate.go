package hooks

import (
	"github.com/ocisnap/ocisnap/pkg/statefile"
	"github.com/ocisnap/ocisnap/pkg/view"
)

// The state record keeps a view as statefile.View; package view works on
// view.State. The two carry the same fields, and these functions map one
// onto the other, so that the record format and the view API can change
// apart. A record mapped to a state and back is the record unchanged.

// viewState returns the view a record holds, as package view sees it.
func viewState(v *statefile.View) *view.State {
	st := &view.State{
		Kind:       view.Kind(v.Kind),
		Source:     v.Source,
		Mountpoint: v.Mountpoint,
		LoopDevice: v.LoopDevice,
		Mounted:    v.Mounted,
	}
	for _, b := range v.Binds {
		sb := view.BindState{Src: b.Src, Dst: b.Dst, LegacyStub: b.Stub, Mounted: b.Mounted}
		for _, s := range b.Stubs {
			sb.Stubs = append(sb.Stubs, view.Stub{Path: s.Path, Dir: s.Dir})
		}
		st.Binds = append(st.Binds, sb)
	}
	return st
}

// viewRecord returns the record of the view st.
func viewRecord(st *view.State) statefile.View {
	v := statefile.View{
		Kind:       string(st.Kind),
		Source:     st.Source,
		Mountpoint: st.Mountpoint,
		LoopDevice: st.LoopDevice,
		Mounted:    st.Mounted,
	}
	for _, b := range st.Binds {
		rb := statefile.Bind{Src: b.Src, Dst: b.Dst, Stub: b.LegacyStub, Mounted: b.Mounted}
		for _, s := range b.Stubs {
			rb.Stubs = append(rb.Stubs, statefile.Stub{Path: s.Path, Dir: s.Dir})
		}
		v.Binds = append(v.Binds, rb)
	}
	return v
}

// viewStates returns the views a record holds, as package view sees them.
func viewStates(vs []statefile.View) []view.State {
	var out []view.State
	for i := range vs {
		out = append(out, *viewState(&vs[i]))
	}
	return out
}

// viewOverlay returns the read-only layers of a recorded overlay, the
// content of an image view; nil for none.
func viewOverlay(o *statefile.Overlay) *view.Overlay {
	if o == nil {
		return nil
	}
	return &view.Overlay{Lowers: o.Lowers, DataDirs: o.DataDirs, Options: o.Options, UserXattr: o.UserXattr}
}
