package cluster

import (
	"context"
	"fmt"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// PodImage is the (never pulled) image of pods created by CreatePod.
const PodImage = "infergate.test/model-server:sim"

// podContainer is the single container name of pods created by CreatePod.
const podContainer = "model-server"

// testFinalizer keeps a deleted pod around in Terminating state.
const testFinalizer = "e2e.infergate.io/hold"

// CreateNamespace creates a namespace; an existing one is not an error.
func (c *Cluster) CreateNamespace(ctx context.Context, name string) error {
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}
	_, err := c.Clientset.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("cluster: create namespace %s: %w", name, err)
	}
	return nil
}

// CreatePod creates a Pod standing in for a model server and, since there
// is no kubelet, writes its status itself: phase Running with podIP (a
// loopback address where the test's simulated server listens) and Ready as
// given. The pod has no nodeName, so deleting it takes effect at once.
func (c *Cluster) CreatePod(ctx context.Context, ns, name string, labels map[string]string, podIP string, ready bool) (*corev1.Pod, error) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		Spec: corev1.PodSpec{
			Containers: []corev1.Container{{Name: podContainer, Image: PodImage}},
		},
	}
	created, err := c.Clientset.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("cluster: create pod %s/%s: %w", ns, name, err)
	}
	created.Status = runningStatus(podIP, ready, metav1.Now())
	updated, err := c.Clientset.CoreV1().Pods(ns).UpdateStatus(ctx, created, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("cluster: set pod %s/%s running: %w", ns, name, err)
	}
	return updated, nil
}

// SetPodReady flips the pod's Ready (and ContainersReady) condition, as a
// kubelet would when a readiness probe starts or stops passing.
func (c *Cluster) SetPodReady(ctx context.Context, ns, name string, ready bool) (*corev1.Pod, error) {
	pods := c.Clientset.CoreV1().Pods(ns)
	pod, err := pods.Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("cluster: get pod %s/%s: %w", ns, name, err)
	}
	pod.Status = runningStatus(pod.Status.PodIP, ready, metav1.Now())
	updated, err := pods.UpdateStatus(ctx, pod, metav1.UpdateOptions{})
	if err != nil {
		return nil, fmt.Errorf("cluster: set pod %s/%s ready=%v: %w", ns, name, ready, err)
	}
	return updated, nil
}

// TerminatePod starts deleting a pod but holds it in Terminating state
// (deletionTimestamp set, object still present) with a finalizer, which is
// what a pod looks like while a kubelet shuts it down. DeletePod removes it.
func (c *Cluster) TerminatePod(ctx context.Context, ns, name string) error {
	pods := c.Clientset.CoreV1().Pods(ns)
	patch := fmt.Sprintf(`{"metadata":{"finalizers":[%q]}}`, testFinalizer)
	if _, err := pods.Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return fmt.Errorf("cluster: hold pod %s/%s: %w", ns, name, err)
	}
	if err := pods.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
		return fmt.Errorf("cluster: terminate pod %s/%s: %w", ns, name, err)
	}
	return nil
}

// DeletePod deletes a pod immediately (also one held by TerminatePod).
// A pod that is already gone is not an error.
func (c *Cluster) DeletePod(ctx context.Context, ns, name string) error {
	pods := c.Clientset.CoreV1().Pods(ns)
	pod, err := pods.Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cluster: get pod %s/%s: %w", ns, name, err)
	}
	if len(pod.Finalizers) > 0 {
		patch := `{"metadata":{"finalizers":null}}`
		if _, err := pods.Patch(ctx, name, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return fmt.Errorf("cluster: release pod %s/%s: %w", ns, name, err)
		}
	}
	zero := int64(0)
	err = pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("cluster: delete pod %s/%s: %w", ns, name, err)
	}
	return nil
}

func runningStatus(podIP string, ready bool, now metav1.Time) corev1.PodStatus {
	started := true
	cond := corev1.ConditionFalse
	if ready {
		cond = corev1.ConditionTrue
	}
	st := corev1.PodStatus{
		Phase:     corev1.PodRunning,
		HostIP:    "127.0.0.1",
		HostIPs:   []corev1.HostIP{{IP: "127.0.0.1"}},
		StartTime: &now,
		Conditions: []corev1.PodCondition{
			{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.PodInitialized, Status: corev1.ConditionTrue, LastTransitionTime: now},
			{Type: corev1.ContainersReady, Status: cond, LastTransitionTime: now},
			{Type: corev1.PodReady, Status: cond, LastTransitionTime: now},
		},
		ContainerStatuses: []corev1.ContainerStatus{{
			Name:    podContainer,
			Image:   PodImage,
			Ready:   ready,
			Started: &started,
			State:   corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
		}},
	}
	if podIP != "" {
		st.PodIP = podIP
		st.PodIPs = []corev1.PodIP{{IP: podIP}}
	}
	return st
}
