package inventory

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Bucket layout (all values JSON unless noted):
//
//	meta      "schema" -> decimal schema version
//	hosts     host ID -> Host
//	macs      MAC "aa:bb:cc:dd:ee:ff" -> host ID          (index; unique)
//	ips       reserved IPv4 "10.0.0.5" -> host ID          (index; unique)
//	leases    MAC -> Lease
//	leaseips  leased IPv4 -> MAC                            (index; unique)
//	events    host ID -> bucket{ seq (8-byte big-endian) -> Event }
//	secrets   host ID -> the host's BMC password, sealed (AES-256-GCM, see secret.go)
//	tokens, provdata, images: see provision.go and image.go
//
// Per host: hosts, macs, ips, events, secrets, provdata and the tokens entries naming
// it go with the host (DeleteHost); leases and leaseips are per MAC and outlive it until
// they expire.
//
// Host values never hold a BMC password: it lives only, encrypted, in secrets.
// Big-endian sequence keys make a cursor walk the timeline in order.
var (
	bucketMeta     = []byte("meta")
	bucketHosts    = []byte("hosts")
	bucketMACs     = []byte("macs")
	bucketIPs      = []byte("ips")
	bucketLeases   = []byte("leases")
	bucketLeaseIPs = []byte("leaseips")
	bucketEvents   = []byte("events")
	bucketSecrets  = []byte("secrets")
	keySchema      = []byte("schema")
	allBuckets     = [][]byte{bucketMeta, bucketHosts, bucketMACs, bucketIPs, bucketLeases, bucketLeaseIPs, bucketEvents, bucketSecrets}
)

// SchemaVersion is the layout this code reads and writes.
const SchemaVersion = 1

// DefaultLockTimeout is Options.LockTimeout's default.
const DefaultLockTimeout = time.Second

// Validate checks the operator's settings (zero means the default). Its message starts
// with the setting's name in the configuration file.
func (o Options) Validate() error {
	if o.LockTimeout < 0 || o.LockTimeout > 10*time.Minute {
		return fmt.Errorf("lockTimeout: %s: give 0-10m (0: %s)", o.LockTimeout, DefaultLockTimeout)
	}
	return nil
}

// Options tune Open. The zero value is usable. The settings an operator writes carry
// yaml tags (the "inventory" section of rackboot's configuration file; SecretKeyFile is
// its top-level secretKeyFile).
type Options struct {
	// LockTimeout bounds the wait for the file lock held by another process (default 1s).
	LockTimeout time.Duration `yaml:"lockTimeout" doc:"wait for the inventory file's lock, held by another rackboot (serve refuses to start past it)"`
	// Now is the clock (default time.Now).
	Now Clock
	// SecretKeyFile is the key that seals BMC passwords (see LoadOrCreateKey); it is
	// created on first use. Without it the store refuses to store a BMC password.
	SecretKeyFile string
	// Logger reports failed group commits (default: discard).
	Logger *slog.Logger
}

// BoltStore is the bbolt-backed Store.
//
// Leases are served from memory (LeaseTable) with the bbolt file as their durable copy,
// written by group commit (commit.go) together with the DHCP timeline events: one
// transaction and one fsync for all the changes queued during the previous commit.
// A write that must be durable before its caller answers (a bound lease: the DHCP ACK
// is a promise) waits for its commit; an offer does not.
type BoltStore struct {
	db     *bolt.DB
	now    Clock
	sealer *Sealer // nil: no secret key, so no BMC passwords

	leaseMu sync.Mutex // guards leases and orders the commits queued under it
	leases  *LeaseTable
	commits *committer

	// hosts mirrors the MAC and reservation indexes in memory (hostindex.go), so the
	// DHCP service's lookups of unknown MACs and reservation checks read no bbolt.
	hosts hostIndex
}

var _ Store = (*BoltStore)(nil)

// Open opens (creating if needed) the inventory at path. If another process holds the
// file it fails with ErrLocked instead of hanging.
func Open(path string, opts Options) (*BoltStore, error) {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = DefaultLockTimeout
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	var sealer *Sealer
	if opts.SecretKeyFile != "" {
		key, _, err := LoadOrCreateKey(opts.SecretKeyFile)
		if err != nil {
			return nil, err
		}
		if sealer, err = NewSealer(key); err != nil {
			return nil, err
		}
	}
	// NoFreelistSync: the freelist is rebuilt on open instead of written by every commit,
	// which halves what the DHCP group commits write (bbolt recommends it for write-heavy
	// use).
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, bolterrors.ErrTimeout) {
			return nil, fmt.Errorf("open inventory %s: %w: is another rackboot running with the same data directory?", path, ErrLocked)
		}
		return nil, fmt.Errorf("open inventory %s: %w", path, err)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &BoltStore{db: db, now: opts.Now, sealer: sealer, leases: NewLeaseTable()}
	if err := s.migrate(path); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.hosts.load(db); err != nil {
		db.Close()
		return nil, fmt.Errorf("open inventory %s: %w", path, err)
	}
	if err := s.loadLeases(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open inventory %s: %w", path, err)
	}
	s.commits = newCommitter(db, opts.Logger)
	if err := s.sealClearPasswords(); err != nil {
		db.Close()
		return nil, fmt.Errorf("open inventory %s: %w", path, err)
	}
	return s, nil
}

// migrate creates the buckets of a new file and refuses files written by a newer
// rackboot. Future migrations copy the file to PATH.schemaN.bak before changing it.
func (s *BoltStore) migrate(path string) error {
	var found int
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		v := meta.Get(keySchema)
		if v == nil {
			return meta.Put(keySchema, []byte(strconv.Itoa(SchemaVersion)))
		}
		n, err := strconv.Atoi(string(v))
		if err != nil {
			return fmt.Errorf("inventory %s: schema version %q is unreadable: the file is damaged; restore it from a backup", path, v)
		}
		found = n
		return nil
	})
	if err != nil {
		return err
	}
	if found > SchemaVersion {
		return fmt.Errorf("inventory %s has schema %d but this rackboot knows only up to %d: run a newer rackboot", path, found, SchemaVersion)
	}
	if found != 0 && found < SchemaVersion {
		if err := s.backup(fmt.Sprintf("%s.schema%d.bak", path, found)); err != nil {
			return fmt.Errorf("backing up inventory before migration: %w", err)
		}
		// No migrations exist yet: schema 1 is the first.
	}
	return nil
}

func (s *BoltStore) backup(dst string) error {
	return s.db.View(func(tx *bolt.Tx) error {
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		if _, err := tx.WriteTo(f); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	})
}

// Backup writes a consistent copy of the inventory to w (a hot backup).
func (s *BoltStore) Backup(w io.Writer) error {
	return s.db.View(func(tx *bolt.Tx) error {
		_, err := tx.WriteTo(w)
		return err
	})
}

// Close releases the file.
// Close commits what is queued and closes the file.
func (s *BoltStore) Close() error {
	if s.commits != nil {
		s.commits.close()
	}
	return s.db.Close()
}

func invalid(err error) error { return fmt.Errorf("%w: %w", ErrInvalid, err) }

// CreateHosts implements Store.
func (s *BoltStore) CreateHosts(ctx context.Context, hosts ...Host) ([]Host, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	now := s.now().UTC()
	out := make([]Host, 0, len(hosts))
	err := s.hostUpdate(func(tx *bolt.Tx) error {
		for i := range hosts {
			h := hosts[i].Clone()
			if err := h.Normalize(); err != nil {
				return invalid(fmt.Errorf("host %d: %w", i+1, err))
			}
			if tx.Bucket(bucketHosts).Get([]byte(h.ID)) != nil {
				return fmt.Errorf("%w: host %s already exists", ErrConflict, h.ID)
			}
			h.CreatedAt, h.UpdatedAt, h.Revision = now, now, 1
			if err := s.index(tx, &h); err != nil {
				return err
			}
			if err := s.storeSecret(tx, &h); err != nil {
				return err
			}
			if err := putJSON(tx.Bucket(bucketHosts), []byte(h.ID), &h); err != nil {
				return err
			}
			out = append(out, h)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// index claims h's MACs and reserved IP in the unique indexes, failing with ErrConflict
// if another host or a foreign lease holds them.
func (s *BoltStore) index(tx *bolt.Tx, h *Host) error {
	macs := tx.Bucket(bucketMACs)
	for _, m := range h.MACs {
		if owner := macs.Get([]byte(m)); owner != nil && string(owner) != h.ID {
			return fmt.Errorf("%w: MAC %s already belongs to host %s", ErrConflict, m, owner)
		}
		if err := macs.Put([]byte(m), []byte(h.ID)); err != nil {
			return err
		}
		s.hosts.record(indexMAC, m, h.ID)
	}
	if h.IP == "" {
		return nil
	}
	ips := tx.Bucket(bucketIPs)
	if owner := ips.Get([]byte(h.IP)); owner != nil && string(owner) != h.ID {
		return fmt.Errorf("%w: IP %s is already reserved for host %s", ErrConflict, h.IP, owner)
	}
	if l, ok := s.leaseOn(h.IP); ok && !h.HasMAC(l.MAC) && l.Expires.After(s.now()) {
		return fmt.Errorf("%w: IP %s is leased to MAC %s until %s: pick another address or wait for the lease to expire", ErrConflict, h.IP, l.MAC, l.Expires.Format(time.RFC3339))
	}
	if err := ips.Put([]byte(h.IP), []byte(h.ID)); err != nil {
		return err
	}
	s.hosts.record(indexIP, h.IP, h.ID)
	return nil
}

func (s *BoltStore) unindex(tx *bolt.Tx, h *Host) error {
	for _, m := range h.MACs {
		if err := tx.Bucket(bucketMACs).Delete([]byte(m)); err != nil {
			return err
		}
		s.hosts.record(indexMAC, m, "")
	}
	if h.IP != "" {
		if err := tx.Bucket(bucketIPs).Delete([]byte(h.IP)); err != nil {
			return err
		}
		s.hosts.record(indexIP, h.IP, "")
	}
	return nil
}

// GetHost implements Store.
func (s *BoltStore) GetHost(ctx context.Context, id string) (Host, error) {
	var h Host
	err := s.db.View(func(tx *bolt.Tx) error { return getHost(tx, id, &h) })
	return h, err
}

func getHost(tx *bolt.Tx, id string, h *Host) error {
	if err := getJSON(tx.Bucket(bucketHosts), []byte(id), h); err != nil {
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("host %s: %w", id, ErrNotFound)
		}
		return err
	}
	stripPassword(h)
	return nil
}

// stripPassword keeps reads password-free even for a record written before passwords
// were sealed and not yet migrated (a store opened without a key).
func stripPassword(h *Host) {
	if h.BMC != nil && h.BMC.Password != "" {
		h.BMC.Password = ""
		h.BMC.PasswordSet = true
	}
}

// HostByMAC implements Store.
func (s *BoltStore) HostByMAC(ctx context.Context, mac string) (Host, error) {
	n, err := NormalizeMAC(mac)
	if err != nil {
		return Host{}, invalid(err)
	}
	// Unknown MACs are most of a DHCP storm's lookups: they read no bbolt, and their
	// error's message is built only if someone prints it.
	id, ok := s.hosts.byMAC(n)
	if !ok {
		return Host{}, noHostWithMAC(n)
	}
	var h Host
	err = s.db.View(func(tx *bolt.Tx) error { return getHost(tx, id, &h) })
	return h, err
}

// noHostWithMAC is ErrNotFound for a MAC no host has.
type noHostWithMAC string

func (e noHostWithMAC) Error() string {
	return "no host with MAC " + string(e) + ": " + ErrNotFound.Error()
}
func (e noHostWithMAC) Unwrap() error { return ErrNotFound }

// HostByIP implements Store.
func (s *BoltStore) HostByIP(ctx context.Context, ip string) (Host, error) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return Host{}, invalid(fmt.Errorf("%q is not an IP address", ip))
	}
	key := []byte(a.Unmap().String())
	var h Host
	err = s.db.View(func(tx *bolt.Tx) error {
		if id := tx.Bucket(bucketIPs).Get(key); id != nil {
			return getHost(tx, string(id), &h)
		}
		l, ok := s.leaseOn(string(key))
		if !ok || !l.Expires.After(s.now()) {
			return fmt.Errorf("no host with IP %s: %w", key, ErrNotFound)
		}
		id := tx.Bucket(bucketMACs).Get([]byte(l.MAC))
		if id == nil {
			return fmt.Errorf("IP %s is leased to MAC %s, which is not enrolled: %w", key, l.MAC, ErrNotFound)
		}
		return getHost(tx, string(id), &h)
	})
	return h, err
}

// ListHosts implements Store; hosts come sorted by ID.
func (s *BoltStore) ListHosts(ctx context.Context) ([]Host, error) {
	var out []Host
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHosts).ForEach(func(k, v []byte) error {
			var h Host
			if err := json.Unmarshal(v, &h); err != nil {
				return fmt.Errorf("host %s: %w", k, err)
			}
			stripPassword(&h)
			out = append(out, h)
			return nil
		})
	})
	return out, err
}

// UpdateHost implements Store.
func (s *BoltStore) UpdateHost(ctx context.Context, id string, fn func(*Host) error) (Host, error) {
	if err := ctx.Err(); err != nil {
		return Host{}, err
	}
	var out Host
	err := s.hostUpdate(func(tx *bolt.Tx) error {
		var old Host
		if err := getHost(tx, id, &old); err != nil {
			return err
		}
		h := old.Clone()
		if err := fn(&h); err != nil {
			return err
		}
		if h.ID != old.ID {
			return invalid(fmt.Errorf("host %s: the ID cannot change", old.ID))
		}
		if err := h.Normalize(); err != nil {
			return invalid(err)
		}
		if err := s.unindex(tx, &old); err != nil {
			return err
		}
		if err := s.index(tx, &h); err != nil {
			return err
		}
		if err := s.storeSecret(tx, &h); err != nil {
			return err
		}
		h.CreatedAt = old.CreatedAt
		h.UpdatedAt = s.now().UTC()
		h.Revision = old.Revision + 1
		out = h
		return putJSON(tx.Bucket(bucketHosts), []byte(h.ID), &h)
	})
	return out, err
}

// DeleteHost implements Store. One transaction removes everything kept for the host:
// its record, its MAC and reservation index entries, its sealed BMC password, its
// timeline, its sealed provisioning data (user-data, Ignition: kubeadm join secrets)
// and every token index entry that names it. A crash leaves the whole host or none of
// it, and a host created later with the same ID starts with nothing of this one.
//
// Its DHCP leases stay, keyed by MAC, until they expire or the client releases them. A
// lease is a promise made to a NIC on the wire, not part of the operator's record: the
// machine may still be running with that address, and dropping the lease would let the
// pool hand the address to another client while it is in use (ISC dhcpd, Kea and
// dnsmasq keep leases when a reservation goes, for the same reason). A kept lease no
// longer resolves to a host (HostByIP); a host enrolled again with the same MAC carries
// on with it; a host with another MAC cannot reserve the address until it expires, and
// the conflict says until when.
func (s *BoltStore) DeleteHost(ctx context.Context, id string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.hostUpdate(func(tx *bolt.Tx) error {
		var h Host
		if err := getHost(tx, id, &h); err != nil {
			return err
		}
		if err := s.unindex(tx, &h); err != nil {
			return err
		}
		if err := tx.Bucket(bucketSecrets).Delete([]byte(id)); err != nil {
			return err
		}
		if tx.Bucket(bucketEvents).Bucket([]byte(id)) != nil {
			if err := tx.Bucket(bucketEvents).DeleteBucket([]byte(id)); err != nil {
				return err
			}
		}
		if err := deleteSecurity(tx, id); err != nil { // security.go
			return err
		}
		if err := dropTokens(tx, &h); err != nil { // provision.go
			return err
		}
		if b := tx.Bucket(bucketProvData); b != nil {
			if err := b.Delete([]byte(id)); err != nil {
				return fmt.Errorf("host %s: deleting its provisioning data: %w", id, err)
			}
		}
		return tx.Bucket(bucketHosts).Delete([]byte(id))
	})
}

// The lease methods are in leases.go.

// AppendEvent implements Store.
func (s *BoltStore) AppendEvent(ctx context.Context, hostID string, e Event) (Event, error) {
	if e.Type == "" {
		return Event{}, invalid(errors.New("event has no type"))
	}
	if e.Time.IsZero() {
		e.Time = s.now().UTC()
	}
	// Events queued before this one (RecordEvents: DHCP's and TFTP's, waiting for the
	// group commit) get their sequence numbers first, so a timeline keeps the order
	// things happened in: a DHCP ACK before the iPXE script fetch that follows it.
	if err := s.commits.flush(); err != nil {
		return Event{}, err
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketHosts).Get([]byte(hostID)) == nil {
			return fmt.Errorf("host %s: %w", hostID, ErrNotFound)
		}
		var err error
		e, err = appendEventTx(tx, hostID, e) // provision.go
		return err
	})
	return e, err
}

// Events implements Store.
func (s *BoltStore) Events(ctx context.Context, hostID string, after uint64) ([]Event, error) {
	// Events queued by RecordEvents are readable once committed.
	if err := s.commits.flush(); err != nil {
		return nil, err
	}
	var out []Event
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketHosts).Get([]byte(hostID)) == nil {
			return fmt.Errorf("host %s: %w", hostID, ErrNotFound)
		}
		b := tx.Bucket(bucketEvents).Bucket([]byte(hostID))
		if b == nil {
			return nil
		}
		var err error
		out, err = readEvents(b.Cursor(), securityCursor(tx, hostID), after) // security.go
		if err != nil {
			return fmt.Errorf("host %s: %w", hostID, err)
		}
		return nil
	})
	return out, err
}

func seqKey(n uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, n)
	return k
}

func putJSON(b *bolt.Bucket, key []byte, v any) error {
	buf, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return b.Put(key, buf)
}

// getJSON decodes inside the transaction, so nothing returned aliases bbolt's pages.
func getJSON(b *bolt.Bucket, key []byte, v any) error {
	buf := b.Get(key)
	if buf == nil {
		return ErrNotFound
	}
	if err := json.Unmarshal(buf, v); err != nil {
		return fmt.Errorf("decoding %s/%s: %w", "inventory", key, err)
	}
	return nil
}

// storeSecret moves h's BMC password out of h and into the secrets bucket, sealed,
// and sets PasswordSet. An empty Password keeps the stored one when PasswordSet is
// true and removes it when false; no BMC removes it.
func (s *BoltStore) storeSecret(tx *bolt.Tx, h *Host) error {
	b := tx.Bucket(bucketSecrets)
	key := []byte(h.ID)
	if h.BMC == nil {
		return b.Delete(key)
	}
	pw := h.BMC.Password
	h.BMC.Password = ""
	switch {
	case pw != "":
		if s.sealer == nil {
			return fmt.Errorf("host %s: cannot store its BMC password: the inventory was opened without a secret key (Options.SecretKeyFile)", h.ID)
		}
		sealed, err := s.sealer.Seal([]byte(pw), secretLabel(h.ID))
		if err != nil {
			return fmt.Errorf("host %s: sealing the BMC password: %w", h.ID, err)
		}
		h.BMC.PasswordSet = true
		return b.Put(key, sealed)
	case h.BMC.PasswordSet:
		h.BMC.PasswordSet = b.Get(key) != nil
		return nil
	default:
		return b.Delete(key)
	}
}

// BMCCredentials implements Store: the one read that returns a BMC password.
func (s *BoltStore) BMCCredentials(ctx context.Context, id string) (BMC, error) {
	var out BMC
	err := s.db.View(func(tx *bolt.Tx) error {
		var h Host
		if err := getJSON(tx.Bucket(bucketHosts), []byte(id), &h); err != nil {
			if errors.Is(err, ErrNotFound) {
				return fmt.Errorf("host %s: %w", id, ErrNotFound)
			}
			return err
		}
		if h.BMC == nil {
			return nil
		}
		out = BMC{URL: h.BMC.URL}
		if h.BMC.Password != "" {
			// A record from before sealing, in a store opened without a key.
			out.Password, out.PasswordSet = h.BMC.Password, true
			return nil
		}
		sealed := tx.Bucket(bucketSecrets).Get([]byte(id))
		if sealed == nil {
			return nil
		}
		if s.sealer == nil {
			return fmt.Errorf("host %s: its BMC password is encrypted but the inventory was opened without the secret key", id)
		}
		pw, err := s.sealer.Open(sealed, secretLabel(id))
		if err != nil {
			return fmt.Errorf("host %s: %w the BMC password: the secret key is not the one it was stored with: restore that key file, or set the password again with 'rackboot host bmc %s --bmc URL --bmc-password-file FILE'", id, err, id)
		}
		out.Password, out.PasswordSet = string(pw), true
		return nil
	})
	return out, err
}

// sealClearPasswords moves BMC passwords that an earlier build stored inside host
// records into the secrets bucket. It needs the key; without one they stay (reads
// never return them) until a store with a key opens the file.
func (s *BoltStore) sealClearPasswords() error {
	if s.sealer == nil {
		return nil
	}
	var ids []string
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHosts).ForEach(func(k, v []byte) error {
			var h Host
			if json.Unmarshal(v, &h) == nil && h.BMC != nil && h.BMC.Password != "" {
				ids = append(ids, string(k))
			}
			return nil
		})
	})
	if err != nil || len(ids) == 0 {
		return err
	}
	return s.db.Update(func(tx *bolt.Tx) error {
		for _, id := range ids {
			var h Host
			if err := getJSON(tx.Bucket(bucketHosts), []byte(id), &h); err != nil {
				return err
			}
			if err := s.storeSecret(tx, &h); err != nil {
				return err
			}
			if err := putJSON(tx.Bucket(bucketHosts), []byte(id), &h); err != nil {
				return err
			}
		}
		return nil
	})
}
