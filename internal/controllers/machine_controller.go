package controllers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/events"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/cluster-api/util"
	"sigs.k8s.io/cluster-api/util/conditions"
	"sigs.k8s.io/cluster-api/util/patch"
	"sigs.k8s.io/cluster-api/util/paused"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	"github.com/rackboot/rackboot/agentapi"
	infrav1 "github.com/rackboot/rackboot/api/v1alpha1"
	"github.com/rackboot/rackboot/internal/inventory"
)

// +kubebuilder:rbac:groups=infrastructure.cluster.x-k8s.io,resources=rackbootmachines,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=infrastructure.cluster.x-k8s.io,resources=rackbootmachines/status;rackbootmachines/finalizers,verbs=get;update;patch
// +kubebuilder:rbac:groups=cluster.x-k8s.io,resources=machines;clusters,verbs=get;list;watch
// +kubebuilder:rbac:groups="",resources=secrets,verbs=get
// +kubebuilder:rbac:groups=events.k8s.io,resources=events,verbs=create;patch
// +kubebuilder:rbac:groups=coordination.k8s.io,resources=leases,verbs=get;list;watch;create;update;patch;delete

// MachineReconciler reconciles the RackbootMachines placed on one rack: it claims a
// host from the rack's inventory, has the provisioner write the machine's image and
// bootstrap data to it, reports providerID and addresses, and on deletion wipes and
// releases the host.
type MachineReconciler struct {
	client      client.Client
	apiReader   client.Reader // uncached: bootstrap secrets are read once, never watched
	rack        string
	inv         Inventory
	prov        HostProvisioner
	poll        time.Duration        // re-check of a host the provisioner is working on
	waitingPoll time.Duration        // re-check of a machine waiting for a free host
	events      events.EventRecorder // nil records none (machine_events.go)

	// kick re-queues machines: those waiting for a host when one is released, and the
	// owner of a host the provisioner reports a change on.
	kick    chan event.GenericEvent
	mu      sync.Mutex
	waiting map[types.NamespacedName]struct{}
	// observed is the status last stored per machine, for its events.
	observed map[types.NamespacedName]observed
}

// owner is the claim owner of a RackbootMachine in the inventory.
func owner(rm *infrav1.RackbootMachine) string { return rm.Namespace + "/" + rm.Name }

// ProviderID is the providerID of host on rack.
func ProviderID(rack, host string) string { return infrav1.ProviderIDPrefix + rack + "/" + host }

// Reconcile follows the order Cluster API providers use: the object, its owner Machine,
// the Cluster, placement, the patch helper, pause, then delete or normal.
func (r *MachineReconciler) Reconcile(ctx context.Context, req reconcile.Request) (_ reconcile.Result, reterr error) {
	logger := log.FromContext(ctx)
	rm := &infrav1.RackbootMachine{}
	if err := r.client.Get(ctx, req.NamespacedName, rm); err != nil {
		if apierrors.IsNotFound(err) {
			r.setWaiting(req.NamespacedName, false)
			r.forget(req.NamespacedName)
			return reconcile.Result{}, nil
		}
		return reconcile.Result{}, err
	}
	before := r.lastObserved(rm)
	deleting := !rm.DeletionTimestamp.IsZero()
	machine, err := util.GetOwnerMachine(ctx, r.client, rm.ObjectMeta)
	switch {
	case err != nil && !(deleting && apierrors.IsNotFound(err)):
		return reconcile.Result{}, err
	case machine == nil && !deleting:
		logger.V(4).Info("waiting for the Machine controller to set the owner reference")
		return reconcile.Result{}, nil
	}
	var cluster *clusterv1.Cluster
	if machine != nil {
		cluster, err = util.GetClusterFromMetadata(ctx, r.client, machine.ObjectMeta)
		if err != nil && !deleting {
			logger.Info("the Machine has no cluster label or its Cluster does not exist", "machine", machine.Name, "err", err)
			return reconcile.Result{}, nil
		}
	}
	// A RackbootMachine whose Machine or Cluster is already gone can still be deleted:
	// its host is found through the placement it recorded.

	rack, placed := r.placement(machine, rm)
	if placed && rack != r.rack {
		// Another rack's instance reconciles it. Only a claim this rack made before
		// another rack adopted the machine is ours to undo.
		return reconcile.Result{}, r.dropStrayClaim(ctx, rm)
	}

	helper, err := patch.NewHelper(rm, r.client)
	if err != nil {
		return reconcile.Result{}, err
	}
	var related runtime.Object // an untyped nil when the Machine is gone
	if machine != nil {
		related = machine
	}
	defer func() {
		err := helper.Patch(ctx, rm, patch.WithOwnedConditions{Conditions: []string{
			clusterv1.ReadyCondition, infrav1.HostClaimedCondition, infrav1.HostProvisionedCondition,
		}})
		switch {
		case err == nil:
			// Events only for a status that is stored: a failed patch is retried and
			// tells its changes then.
			r.recordTransitions(rm, related, before)
		case apierrors.IsNotFound(err):
			r.forget(req.NamespacedName)
		default:
			reterr = errors.Join(reterr, err)
		}
	}()

	if isPaused, requeue, err := paused.EnsurePausedCondition(ctx, r.client, cluster, rm); err != nil || isPaused || requeue {
		return reconcile.Result{}, err
	}

	if deleting {
		if !placed {
			// Unplaced and never adopted: no rack holds a host for it (but undo a claim
			// a crash left between claiming and adopting).
			return reconcile.Result{}, r.dropStrayClaim(ctx, rm)
		}
		return r.reconcileDelete(ctx, rm)
	}
	if placed {
		controllerutil.AddFinalizer(rm, infrav1.MachineFinalizer)
	}
	return r.reconcileNormal(ctx, rm, machine, cluster, placed)
}

// placement says which rack owns the machine: the Machine's failure domain (Cluster
// API placed it), else the rack that adopted it (RackLabel), else (the Machine is
// gone) the failure domain the machine's status recorded. placed is false for an
// unplaced machine no rack has adopted yet.
func (r *MachineReconciler) placement(m *clusterv1.Machine, rm *infrav1.RackbootMachine) (rack string, placed bool) {
	if m != nil && m.Spec.FailureDomain != "" {
		return m.Spec.FailureDomain, true
	}
	if l := rm.Labels[infrav1.RackLabel]; l != "" {
		return l, true
	}
	if m == nil && rm.Status.FailureDomain != "" {
		return rm.Status.FailureDomain, true
	}
	return "", false
}

func (r *MachineReconciler) reconcileNormal(ctx context.Context, rm *infrav1.RackbootMachine, machine *clusterv1.Machine, cluster *clusterv1.Cluster, placed bool) (reconcile.Result, error) {
	if placed {
		rm.Status.FailureDomain = r.rack
	}
	if !ptr.Deref(cluster.Status.Initialization.InfrastructureProvisioned, false) {
		r.pending(rm, infrav1.ReasonWaitingForClusterInfrastructure, "waiting for the Cluster's infrastructure (RackbootCluster) to be provisioned")
		return reconcile.Result{}, nil
	}
	if machine.Spec.Bootstrap.DataSecretName == nil {
		r.pending(rm, infrav1.ReasonWaitingForBootstrapData, "waiting for the bootstrap provider to write the Machine's bootstrap data secret")
		return reconcile.Result{}, nil
	}
	sel, err := metav1.LabelSelectorAsSelector(&rm.Spec.HostSelector)
	if err != nil {
		r.setFalse(rm, infrav1.HostClaimedCondition, infrav1.ReasonInvalidSpec, fmt.Sprintf("spec.hostSelector: %v: fix the selector", err))
		rm.Status.State = infrav1.StatePending
		return reconcile.Result{}, nil
	}

	if rm.Status.Host != "" {
		// The machine has its host: never claim another behind the user's back.
		return r.reconcileHost(ctx, rm, machine)
	}
	key := types.NamespacedName{Namespace: rm.Namespace, Name: rm.Name}
	host, err := r.inv.ClaimHost(ctx, inventory.ClaimRequest{
		Owner: owner(rm),
		Match: func(h *inventory.Host) bool { return sel.Matches(labels.Set(h.Labels)) },
	})
	if errors.Is(err, inventory.ErrNoHost) {
		r.setWaiting(key, true)
		rm.Status.State = infrav1.StateWaitingForHost
		msg := fmt.Sprintf("rack %s: %v", r.rack, err)
		r.setFalse(rm, infrav1.HostClaimedCondition, infrav1.ReasonNoHostAvailable, msg)
		r.setFalse(rm, clusterv1.ReadyCondition, infrav1.ReasonNoHostAvailable, msg)
		return reconcile.Result{RequeueAfter: r.waitingPoll}, nil
	}
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("claiming a host: %w", err)
	}
	r.setWaiting(key, false)
	if !placed {
		adopted, err := r.adopt(ctx, rm, host.ID)
		if err != nil || !adopted {
			return reconcile.Result{Requeue: !adopted && err == nil}, err
		}
		rm.Status.FailureDomain = r.rack
	}

	rm.Status.Host = host.ID
	if rm.Spec.ProviderID == "" {
		rm.Spec.ProviderID = ProviderID(r.rack, host.ID)
	}
	r.setTrue(rm, infrav1.HostClaimedCondition, infrav1.ReasonHostClaimed, fmt.Sprintf("host %s of rack %s", host.ID, r.rack))
	return r.reconcileHost(ctx, rm, machine)
}

// reconcileHost drives the machine's claimed host (status.host) towards provisioned.
func (r *MachineReconciler) reconcileHost(ctx context.Context, rm *infrav1.RackbootMachine, machine *clusterv1.Machine) (reconcile.Result, error) {
	host, err := r.inv.GetHost(ctx, rm.Status.Host)
	if errors.Is(err, inventory.ErrNotFound) {
		return r.lost(rm), nil
	}
	if err != nil {
		return reconcile.Result{}, err
	}
	if host.Claim.Owner != owner(rm) {
		return r.failed(rm, HostStatus{Reason: fmt.Sprintf("it was released from this machine outside Cluster API (claim now %q)", host.Claim.Owner)}), nil
	}

	st, err := r.prov.HostStatus(ctx, host.ID)
	if errors.Is(err, inventory.ErrNotFound) {
		return r.lost(rm), nil
	}
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("host %s: status: %w", host.ID, err)
	}
	if st.ImageOwner != owner(rm) {
		if st.State == inventory.StateFailed {
			return r.failed(rm, st), nil
		}
		req, err := r.provisionRequest(ctx, rm, machine)
		if err != nil {
			r.setFalse(rm, infrav1.HostProvisionedCondition, infrav1.ReasonInternalError, err.Error())
			return reconcile.Result{}, err
		}
		if err := r.prov.Provision(ctx, host.ID, req); err != nil {
			if errors.Is(err, inventory.ErrNotFound) {
				return r.lost(rm), nil
			}
			r.setFalse(rm, infrav1.HostProvisionedCondition, infrav1.ReasonInternalError, fmt.Sprintf("provisioner: %v", err))
			return reconcile.Result{}, fmt.Errorf("host %s: provision: %w", host.ID, err)
		}
		log.FromContext(ctx).Info("provisioning host", "hostID", host.ID, "image", req.Image, "format", req.Format)
		if st, err = r.prov.HostStatus(ctx, host.ID); err != nil {
			return reconcile.Result{}, fmt.Errorf("host %s: status: %w", host.ID, err)
		}
	}

	if len(st.Addresses) > 0 {
		rm.Status.Addresses = st.Addresses
	}
	rm.Status.Step = st.Step
	switch st.State {
	case inventory.StateProvisioned:
		rm.Status.State = infrav1.StateProvisioned
		rm.Status.Initialization.Provisioned = ptr.To(true)
		msg := fmt.Sprintf("host %s runs image %s", host.ID, rm.Spec.Image)
		if st.Step != "" {
			msg += ": " + st.Step
		}
		r.setTrue(rm, infrav1.HostProvisionedCondition, infrav1.ReasonProvisioned, msg)
		r.setTrue(rm, clusterv1.ReadyCondition, infrav1.ReasonProvisioned, msg)
		return reconcile.Result{}, nil
	case inventory.StateFailed:
		return r.failed(rm, st), nil
	case inventory.StateProvisioning, inventory.StateAvailable:
		rm.Status.State = infrav1.StateProvisioning
		msg := fmt.Sprintf("host %s is being provisioned with image %s", host.ID, rm.Spec.Image)
		if st.Step != "" {
			msg += ": " + st.Step
		}
		r.setFalse(rm, infrav1.HostProvisionedCondition, infrav1.ReasonProvisioning, msg)
		r.setFalse(rm, clusterv1.ReadyCondition, infrav1.ReasonProvisioning, msg)
		return reconcile.Result{RequeueAfter: r.poll}, nil
	default:
		// Someone (an operator with the CLI) took the host away from this machine.
		return r.failed(rm, HostStatus{State: inventory.StateFailed, Reason: fmt.Sprintf("the host is %s outside Cluster API", st.State)}), nil
	}
}

// adopt records that this rack took an unplaced machine, guarded by the object's
// resourceVersion so two racks cannot both adopt it. On a conflict it gives the
// claimed host back; the next reconcile sees who won.
func (r *MachineReconciler) adopt(ctx context.Context, rm *infrav1.RackbootMachine, hostID string) (bool, error) {
	base := rm.DeepCopy()
	if rm.Labels == nil {
		rm.Labels = map[string]string{}
	}
	rm.Labels[infrav1.RackLabel] = r.rack
	controllerutil.AddFinalizer(rm, infrav1.MachineFinalizer)
	err := r.client.Patch(ctx, rm, client.MergeFromWithOptions(base, client.MergeFromWithOptimisticLock{}))
	if err == nil {
		log.FromContext(ctx).Info("adopted unplaced machine", "rack", r.rack, "hostID", hostID)
		// The deferred patch helper diffs against the object as it was read; a new
		// resourceVersion in that diff would turn its patches into optimistic-lock ones
		// that fail on any concurrent write (Cluster API's own).
		rm.ResourceVersion = base.ResourceVersion
		return true, nil
	}
	// Undo the label in memory too, or the deferred patch would apply it without the
	// lock.
	base.DeepCopyInto(rm)
	if _, rerr := r.inv.ReleaseHost(ctx, hostID, owner(rm)); rerr != nil && !errors.Is(rerr, inventory.ErrNotFound) {
		err = errors.Join(err, rerr)
	}
	r.kickWaiting()
	if apierrors.IsConflict(err) {
		return false, nil
	}
	return false, err
}

// dropStrayClaim releases a host this rack claimed for a machine another rack owns or
// that is going away unadopted; the host never got the machine's image.
func (r *MachineReconciler) dropStrayClaim(ctx context.Context, rm *infrav1.RackbootMachine) error {
	h, err := r.inv.HostByOwner(ctx, owner(rm))
	if errors.Is(err, inventory.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if _, err := r.inv.ReleaseHost(ctx, h.ID, owner(rm)); err != nil && !errors.Is(err, inventory.ErrNotFound) {
		return err
	}
	r.kickWaiting()
	return nil
}

func (r *MachineReconciler) reconcileDelete(ctx context.Context, rm *infrav1.RackbootMachine) (reconcile.Result, error) {
	logger := log.FromContext(ctx)
	done := func() (reconcile.Result, error) {
		controllerutil.RemoveFinalizer(rm, infrav1.MachineFinalizer)
		r.setWaiting(types.NamespacedName{Namespace: rm.Namespace, Name: rm.Name}, false)
		return reconcile.Result{}, nil
	}
	hostID := rm.Status.Host
	if hostID == "" {
		h, err := r.inv.HostByOwner(ctx, owner(rm))
		if errors.Is(err, inventory.ErrNotFound) {
			return done()
		}
		if err != nil {
			return reconcile.Result{}, err
		}
		hostID = h.ID
	}
	release := func() (reconcile.Result, error) {
		_, err := r.inv.ReleaseHost(ctx, hostID, owner(rm))
		switch {
		case errors.Is(err, inventory.ErrNotFound):
			logger.Info("host vanished from the inventory; deleting the machine anyway", "hostID", hostID)
		case errors.Is(err, inventory.ErrConflict):
			logger.Info("host is claimed by someone else now; not releasing it", "hostID", hostID, "err", err)
		case err != nil:
			return reconcile.Result{}, err
		default:
			logger.Info("released host", "hostID", hostID)
			r.event(rm, nil, machineEvent{corev1.EventTypeNormal, EventHostReleased, "Release",
				fmt.Sprintf("host %s is wiped, powered off and back in rack %s's inventory", hostID, r.rack)})
		}
		r.kickWaiting()
		return done()
	}

	st, err := r.prov.HostStatus(ctx, hostID)
	if errors.Is(err, inventory.ErrNotFound) {
		return release()
	}
	if err != nil {
		return reconcile.Result{}, fmt.Errorf("host %s: status: %w", hostID, err)
	}
	if st.State == inventory.StateAvailable && st.ImageOwner == "" {
		return release()
	}
	rm.Status.State = infrav1.StateDeprovisioning
	rm.Status.Step = st.Step
	msg := fmt.Sprintf("host %s is being wiped and powered off", hostID)
	reason := infrav1.ReasonDeprovisioning
	requeue := r.poll
	if st.State == inventory.StateFailed {
		// Retry the wipe, slowly: a host that failed may keep failing until an
		// operator fixes it or removes it from the inventory.
		reason, requeue = infrav1.ReasonHostFailed, 4*r.poll
		msg = fmt.Sprintf("wiping host %s failed (%s): retrying; fix the host, or remove it from the inventory to let the machine go", hostID, st.Reason)
	}
	if st.State != inventory.StateDeprovisioning {
		r.setFalse(rm, clusterv1.ReadyCondition, reason, msg)
		if err := r.prov.Deprovision(ctx, hostID, owner(rm)); err != nil {
			if errors.Is(err, inventory.ErrNotFound) {
				return release()
			}
			return reconcile.Result{}, fmt.Errorf("host %s: deprovision: %w", hostID, err)
		}
		logger.Info("deprovisioning host", "hostID", hostID)
		// The step is the wipe's now, not that of the operation the host left.
		rm.Status.Step = ""
		if now, err := r.prov.HostStatus(ctx, hostID); err == nil && now.State == inventory.StateDeprovisioning {
			rm.Status.Step = now.Step
		}
	}
	if reason == infrav1.ReasonDeprovisioning && rm.Status.Step != "" {
		msg += ": " + rm.Status.Step
	}
	r.setFalse(rm, clusterv1.ReadyCondition, reason, msg)
	return reconcile.Result{RequeueAfter: requeue}, nil
}

// provisionRequest reads the bootstrap data secret and builds the request.
func (r *MachineReconciler) provisionRequest(ctx context.Context, rm *infrav1.RackbootMachine, machine *clusterv1.Machine) (ProvisionRequest, error) {
	name := *machine.Spec.Bootstrap.DataSecretName
	var s corev1.Secret
	if err := r.apiReader.Get(ctx, types.NamespacedName{Namespace: machine.Namespace, Name: name}, &s); err != nil {
		return ProvisionRequest{}, fmt.Errorf("reading bootstrap data secret %s/%s: %w", machine.Namespace, name, err)
	}
	value, ok := s.Data["value"]
	if !ok || len(value) == 0 {
		return ProvisionRequest{}, fmt.Errorf("bootstrap data secret %s/%s has no \"value\" key", machine.Namespace, name)
	}
	format := UserDataFormat(s.Data["format"])
	switch format {
	case "":
		format = FormatCloudConfig
	case FormatCloudConfig, FormatIgnition:
	default:
		return ProvisionRequest{}, fmt.Errorf("bootstrap data secret %s/%s: format %q is not cloud-config or ignition", machine.Namespace, name, format)
	}
	hint := rm.Spec.RootDiskHint
	const gib = 1 << 30
	network, err := NetworkSpec(rm.Spec.Network)
	if err != nil {
		return ProvisionRequest{}, err
	}
	return ProvisionRequest{
		Network: network,
		Owner:   owner(rm),
		Image:   rm.Spec.Image,
		RootDisk: agentapi.RootDiskHint{
			Name:         strings.TrimPrefix(hint.DeviceName, "/dev/"),
			Serial:       hint.Serial,
			WWN:          hint.WWN,
			MinSizeBytes: uint64(hint.MinSizeGiB) * gib,
			MaxSizeBytes: uint64(hint.MaxSizeGiB) * gib,
			Prefer:       hint.Prefer,
		},
		UserData:            value,
		Format:              format,
		CloudConfigAddition: rm.Spec.UserDataAdditions.CloudConfig,
		ButaneAddition:      rm.Spec.UserDataAdditions.Butane,
		// Served under "metadata" in the host's NoCloud meta-data; the cluster template
		// hands provider_id to the kubelet ({{ ds.meta_data.metadata.provider_id }}).
		Metadata: map[string]string{
			"provider_id": ProviderID(r.rack, rm.Status.Host),
			"machine":     machine.Name,
			"cluster":     machine.Spec.ClusterName,
		},
	}, nil
}

func (r *MachineReconciler) lost(rm *infrav1.RackbootMachine) reconcile.Result {
	rm.Status.State = infrav1.StateLost
	msg := fmt.Sprintf("host %s is no longer in rack %s's inventory: delete the Machine (a MachineHealthCheck does it) to get another host", rm.Status.Host, r.rack)
	r.setFalse(rm, infrav1.HostProvisionedCondition, infrav1.ReasonHostLost, msg)
	r.setFalse(rm, clusterv1.ReadyCondition, infrav1.ReasonHostLost, msg)
	return reconcile.Result{RequeueAfter: 4 * r.poll}
}

func (r *MachineReconciler) failed(rm *infrav1.RackbootMachine, st HostStatus) reconcile.Result {
	rm.Status.State = infrav1.StateFailed
	msg := fmt.Sprintf("host %s failed: %s", rm.Status.Host, st.Reason)
	r.setFalse(rm, infrav1.HostProvisionedCondition, infrav1.ReasonHostFailed, msg)
	r.setFalse(rm, clusterv1.ReadyCondition, infrav1.ReasonHostFailed, msg)
	return reconcile.Result{RequeueAfter: 4 * r.poll}
}

func (r *MachineReconciler) pending(rm *infrav1.RackbootMachine, reason, msg string) {
	rm.Status.State = infrav1.StatePending
	r.setFalse(rm, infrav1.HostClaimedCondition, reason, msg)
	r.setFalse(rm, clusterv1.ReadyCondition, reason, msg)
}

func (r *MachineReconciler) setTrue(rm *infrav1.RackbootMachine, typ, reason, msg string) {
	conditions.Set(rm, metav1.Condition{Type: typ, Status: metav1.ConditionTrue, Reason: reason, Message: msg, ObservedGeneration: rm.Generation})
}

func (r *MachineReconciler) setFalse(rm *infrav1.RackbootMachine, typ, reason, msg string) {
	conditions.Set(rm, metav1.Condition{Type: typ, Status: metav1.ConditionFalse, Reason: reason, Message: msg, ObservedGeneration: rm.Generation})
}

func (r *MachineReconciler) setWaiting(key types.NamespacedName, waiting bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if waiting {
		r.waiting[key] = struct{}{}
	} else {
		delete(r.waiting, key)
	}
}

// kickWaiting re-queues every machine waiting for a host: one may have become free.
func (r *MachineReconciler) kickWaiting() {
	r.mu.Lock()
	keys := make([]types.NamespacedName, 0, len(r.waiting))
	for k := range r.waiting {
		keys = append(keys, k)
	}
	r.mu.Unlock()
	for _, k := range keys {
		r.enqueue(k)
	}
}

// enqueue hands a key to the controller without blocking the caller (a reconcile or
// the provisioner); the controller's queue deduplicates. When the buffer is full the
// kick is dropped: every waiting or provisioning machine is polled anyway.
func (r *MachineReconciler) enqueue(k types.NamespacedName) {
	obj := &infrav1.RackbootMachine{ObjectMeta: metav1.ObjectMeta{Namespace: k.Namespace, Name: k.Name}}
	select {
	case r.kick <- event.GenericEvent{Object: obj}:
	default:
	}
}

// HostChanged tells the controller that the provisioner moved a host: its owner is
// reconciled now instead of at the next poll, and a host that became free wakes the
// machines waiting for one. Safe to call from any goroutine; it never blocks.
func (r *MachineReconciler) HostChanged(ctx context.Context, hostID string) {
	h, err := r.inv.GetHost(ctx, hostID)
	if err != nil || h.Claim.IsZero() {
		r.kickWaiting()
		return
	}
	ns, name, ok := strings.Cut(h.Claim.Owner, "/")
	if !ok {
		return
	}
	r.enqueue(types.NamespacedName{Namespace: ns, Name: name})
}
