// Prints the configuration upstream's kubelet (v1.37.2) makes of a config file, as its
// /configz serves it (before loadConfigFile's evictionHard defaults). It produced
// upstream-defaults.json (from a file with only apiVersion and kind) and
// upstream-some.json (from some.yaml, loaded as sub/some.yaml from the parent
// directory, hence "sub/manifests") and upstream-kubeadm.json (from kubeadm.yaml, the
// file kubeadm writes). Build it in a module that requires
// k8s.io/kubernetes v1.37.2 with the staging replaces, such as the one
// `cargo xtask env up --control-plane` writes under target/k8s-build/kubernetes.
//
//go:build ignore

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	kubeletconfigv1beta1 "k8s.io/kubelet/config/v1beta1"
	kubeletscheme "k8s.io/kubernetes/pkg/kubelet/apis/config/scheme"
	"k8s.io/kubernetes/pkg/kubelet/kubeletconfig/configfiles"
	utilfs "k8s.io/kubernetes/pkg/util/filesystem"
)

func main() {
	loader, err := configfiles.NewFsLoader(&utilfs.DefaultFs{}, os.Args[1])
	if err != nil {
		panic(err)
	}
	kc, err := loader.Load(context.Background())
	if err != nil {
		fmt.Println("ERROR:", err)
		os.Exit(1)
	}
	scheme, _, err := kubeletscheme.NewSchemeAndCodecs()
	if err != nil {
		panic(err)
	}
	versioned := &kubeletconfigv1beta1.KubeletConfiguration{}
	if err := scheme.Convert(kc, versioned, nil); err != nil {
		panic(err)
	}
	versioned.GetObjectKind().SetGroupVersionKind(
		kubeletconfigv1beta1.SchemeGroupVersion.WithKind("KubeletConfiguration"))
	b, _ := json.MarshalIndent(versioned, "", "  ")
	fmt.Println(string(b))
}
