package layer

import "fmt"

// IDMapping is one range of a user namespace mapping, as in the OCI runtime
// spec's linux.uidMappings: container ids [ContainerID, ContainerID+Size) are
// host ids [HostID, HostID+Size).
type IDMapping struct {
	ContainerID uint32
	HostID      uint32
	Size        uint32
}

// IDMap translates ids between a container's user namespace and the host.
// A nil or empty IDMap is the identity.
type IDMap struct {
	UIDs []IDMapping
	GIDs []IDMapping
}

func (m *IDMap) identity() bool { return m == nil || (len(m.UIDs) == 0 && len(m.GIDs) == 0) }

// ToHost maps a container uid/gid to host ids.
func (m *IDMap) ToHost(uid, gid int) (int, int, error) {
	if m.identity() {
		return uid, gid, nil
	}
	hu, err := mapID(m.UIDs, uid, true)
	if err != nil {
		return 0, 0, fmt.Errorf("uid %d: %w", uid, err)
	}
	hg, err := mapID(m.GIDs, gid, true)
	if err != nil {
		return 0, 0, fmt.Errorf("gid %d: %w", gid, err)
	}
	return hu, hg, nil
}

// ToContainer maps host uid/gid to container ids.
func (m *IDMap) ToContainer(uid, gid int) (int, int, error) {
	if m.identity() {
		return uid, gid, nil
	}
	cu, err := mapID(m.UIDs, uid, false)
	if err != nil {
		return 0, 0, fmt.Errorf("uid %d: %w", uid, err)
	}
	cg, err := mapID(m.GIDs, gid, false)
	if err != nil {
		return 0, 0, fmt.Errorf("gid %d: %w", gid, err)
	}
	return cu, cg, nil
}

func mapID(ms []IDMapping, id int, toHost bool) (int, error) {
	if len(ms) == 0 {
		return id, nil
	}
	if id < 0 {
		return 0, ErrUnmappedID
	}
	for _, m := range ms {
		from, to := m.HostID, m.ContainerID
		if toHost {
			from, to = m.ContainerID, m.HostID
		}
		if uint64(id) >= uint64(from) && uint64(id) < uint64(from)+uint64(m.Size) {
			return int(uint64(to) + uint64(id) - uint64(from)), nil
		}
	}
	return 0, ErrUnmappedID
}
