package controllers

import (
	"context"
	"errors"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
	clusterv1 "sigs.k8s.io/cluster-api/api/core/v1beta2"
	"sigs.k8s.io/cluster-api/util"
	"sigs.k8s.io/cluster-api/util/conditions"
	"sigs.k8s.io/cluster-api/util/patch"
	"sigs.k8s.io/cluster-api/util/paused"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"

	infrav1 "github.com/rackboot/rackboot/api/v1alpha1"
)

// +kubebuilder:rbac:groups=infrastructure.cluster.x-k8s.io,resources=rackbootclusters,verbs=get;list;watch;update;patch
// +kubebuilder:rbac:groups=infrastructure.cluster.x-k8s.io,resources=rackbootclusters/status;rackbootclusters/finalizers,verbs=get;update;patch

// ReasonWaitingForControlPlaneEndpoint: spec.controlPlaneEndpoint is not set.
const ReasonWaitingForControlPlaneEndpoint = "WaitingForControlPlaneEndpoint"

// ClusterReconciler reports a RackbootCluster's control-plane endpoint (set by the
// user) and its racks as failure domains. Every rack's instance runs it; what it
// writes depends only on the spec, so several writers agree and never flap.
type ClusterReconciler struct {
	client client.Client
}

// Reconcile follows the Cluster API order: object, owner Cluster, patch helper, pause.
// A RackbootCluster holds nothing outside Kubernetes, so it needs no finalizer.
func (r *ClusterReconciler) Reconcile(ctx context.Context, req reconcile.Request) (_ reconcile.Result, reterr error) {
	rc := &infrav1.RackbootCluster{}
	if err := r.client.Get(ctx, req.NamespacedName, rc); err != nil {
		return reconcile.Result{}, client.IgnoreNotFound(err)
	}
	cluster, err := util.GetOwnerCluster(ctx, r.client, rc.ObjectMeta)
	if err != nil {
		return reconcile.Result{}, err
	}
	if cluster == nil {
		log.FromContext(ctx).V(4).Info("waiting for the Cluster controller to set the owner reference")
		return reconcile.Result{}, nil
	}
	helper, err := patch.NewHelper(rc, r.client)
	if err != nil {
		return reconcile.Result{}, err
	}
	defer func() {
		if err := helper.Patch(ctx, rc, patch.WithOwnedConditions{Conditions: []string{clusterv1.ReadyCondition}}); err != nil && !apierrors.IsNotFound(err) {
			reterr = errors.Join(reterr, err)
		}
	}()
	if isPaused, requeue, err := paused.EnsurePausedCondition(ctx, r.client, cluster, rc); err != nil || isPaused || requeue {
		return reconcile.Result{}, err
	}
	if !rc.DeletionTimestamp.IsZero() {
		return reconcile.Result{}, nil
	}

	rc.Status.FailureDomains = nil
	for _, rack := range rc.Spec.Racks {
		rc.Status.FailureDomains = append(rc.Status.FailureDomains, clusterv1.FailureDomain{Name: rack, ControlPlane: ptr.To(true)})
	}
	ep := rc.Spec.ControlPlaneEndpoint
	if ep.Host == "" || ep.Port == 0 {
		conditions.Set(rc, metav1.Condition{
			Type: clusterv1.ReadyCondition, Status: metav1.ConditionFalse, Reason: ReasonWaitingForControlPlaneEndpoint,
			Message:            "set spec.controlPlaneEndpoint (host and port) to the address in front of the control-plane hosts (a VIP or load balancer)",
			ObservedGeneration: rc.Generation,
		})
		return reconcile.Result{}, nil
	}
	rc.Status.Initialization.Provisioned = ptr.To(true)
	conditions.Set(rc, metav1.Condition{
		Type: clusterv1.ReadyCondition, Status: metav1.ConditionTrue, Reason: "Provisioned", ObservedGeneration: rc.Generation,
	})
	return reconcile.Result{}, nil
}
