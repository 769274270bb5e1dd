package main

import (
	"fmt"
	"sort"
	"strings"

	utilfeature "k8s.io/apiserver/pkg/util/feature"
	_ "k8s.io/kubernetes/cmd/kubelet/app"
)

func main() {
	all := utilfeature.DefaultMutableFeatureGate.GetAll()
	deps := utilfeature.DefaultMutableFeatureGate.Dependencies()
	names := []string{}
	for k := range all {
		names = append(names, string(k))
	}
	sort.Strings(names)
	for _, n := range names {
		for k, s := range all {
			if string(k) == n {
				ds := []string{}
				for _, d := range deps[k] {
					ds = append(ds, string(d))
				}
				sort.Strings(ds)
				fmt.Printf("%s\t%v\t%v\t%s\t%s\n", n, s.Default, s.LockToDefault, s.PreRelease, strings.Join(ds, ","))
			}
		}
	}
}
