// Command static_pod_uid produces the golden data for the kubelet's static pod UIDs
// (pod-manager/src/source/spew/): upstream v1.37.2 names a static pod without a UID by
// an fnv-128a hash of apimachinery's dump.ForHash rendering of the decoded internal Pod
// (pkg/kubelet/config/common.go applyDefaults). It is run from the scratch module that
// `cargo xtask env up --control-plane` writes (target/k8s-build/kubernetes):
//
//	mkdir -p target/k8s-build/kubernetes/golden
//	cp xtask/golden/static_pod_uid/main.go target/k8s-build/kubernetes/golden/
//	cd target/k8s-build/kubernetes
//	go run ./golden schema > ../../../pod-manager/src/source/spew/schema.json
//	go run ./golden uids node-a ../../../pod-manager/src/source/spew/testdata \
//	    /etc/kubernetes/manifests > ../../../pod-manager/src/source/spew/golden.tsv
//
// `schema` walks the internal core.Pod type beside the v1 Pod it is converted from (v1.37
// converts them by memory cast, so both have the same fields in the same order) and
// prints every type spew meets: its name as spew prints it and, for struct fields, the
// JSON key of the v1 field holding the value. `uids` decodes each manifest of DIR as the
// file source does, as if it were read from SOURCE_DIR on node NODE, and prints
// `file<TAB>uid<TAB>dump` (the dump quoted as Go quotes strings).
package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/kubernetes/pkg/api/legacyscheme"
	api "k8s.io/kubernetes/pkg/apis/core"
	_ "k8s.io/kubernetes/pkg/apis/core/install"
	"k8s.io/kubernetes/pkg/util/hash"
	"k8s.io/utils/dump"
)

type field struct {
	Name string `json:"name"`
	// The v1 field's JSON key; "" for an embedded struct inlined in its parent's object.
	JSON string `json:"json"`
	Type string `json:"type"`
}

type typeInfo struct {
	// Go kind: struct, ptr, slice, map, string, bool, int32, int64, ...
	Kind string `json:"kind"`
	// Element type (ptr, slice, map value) and key type (map), by name.
	Elem string `json:"elem,omitempty"`
	Key  string `json:"key,omitempty"`
	// Struct fields in declaration order.
	Fields []field `json:"fields,omitempty"`
}

// Types printed by hand in the kubelet (their JSON form is not their Go form).
var opaque = map[string]bool{
	"resource.Quantity":  true,
	"v1.Time":            true,
	"intstr.IntOrString": true,
	"v1.FieldsV1":        true,
}

func schema() {
	types := map[string]*typeInfo{}
	var walk func(internal, external reflect.Type)
	walk = func(internal, external reflect.Type) {
		name := internal.String()
		if _, seen := types[name]; seen {
			return
		}
		if internal.Kind() != external.Kind() {
			panic(fmt.Sprintf("%s and %s differ in kind", internal, external))
		}
		info := &typeInfo{Kind: internal.Kind().String()}
		types[name] = info
		if opaque[name] {
			info.Kind = "opaque"
			return
		}
		switch internal.Kind() {
		case reflect.Ptr, reflect.Slice, reflect.Array:
			info.Elem = internal.Elem().String()
			walk(internal.Elem(), external.Elem())
		case reflect.Map:
			info.Key = internal.Key().String()
			info.Elem = internal.Elem().String()
			walk(internal.Key(), external.Key())
			walk(internal.Elem(), external.Elem())
		case reflect.Struct:
			if internal.NumField() != external.NumField() {
				panic(fmt.Sprintf("%s and %s differ in fields", internal, external))
			}
			for i := 0; i < internal.NumField(); i++ {
				in, ex := internal.Field(i), external.Field(i)
				if in.Name != ex.Name {
					panic(fmt.Sprintf("%s.%s is %s.%s", internal, in.Name, external, ex.Name))
				}
				if !in.IsExported() {
					panic(fmt.Sprintf("%s.%s is unexported", internal, in.Name))
				}
				key := strings.Split(ex.Tag.Get("json"), ",")[0]
				if key == "-" {
					panic(fmt.Sprintf("%s.%s has no JSON key", external, ex.Name))
				}
				if key == "" && !ex.Anonymous {
					key = ex.Name
				}
				info.Fields = append(info.Fields, field{Name: in.Name, JSON: key, Type: in.Type.String()})
				walk(in.Type, ex.Type)
			}
		case reflect.Interface, reflect.Func, reflect.Chan, reflect.UnsafePointer, reflect.Complex64, reflect.Complex128:
			panic(fmt.Sprintf("%s: kind %s is not printed by the kubelet", internal, internal.Kind()))
		}
	}
	walk(reflect.TypeOf(&api.Pod{}), reflect.TypeOf(&v1.Pod{}))
	out, err := json.MarshalIndent(map[string]any{"root": "*core.Pod", "types": types}, "", " ")
	if err != nil {
		panic(err)
	}
	fmt.Println(string(out))
}

func uids(node, dir, sourceDir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		panic(err)
	}
	names := []string{}
	for _, e := range entries {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	for _, name := range names {
		path := filepath.Join(dir, name)
		data, err := os.ReadFile(path)
		if err != nil {
			panic(err)
		}
		js, err := utilyaml.ToJSON(data)
		if err != nil {
			panic(fmt.Sprintf("%s: %v", path, err))
		}
		obj, err := runtime.Decode(legacyscheme.Codecs.UniversalDecoder(), js)
		if err != nil {
			panic(fmt.Sprintf("%s: %v", path, err))
		}
		pod := obj.(*api.Pod)
		hasher := fnv.New128a()
		hash.DeepHashObject(hasher, pod)
		fmt.Fprintf(hasher, "host:%s", node)
		fmt.Fprintf(hasher, "file:%s", filepath.Join(sourceDir, name))
		fmt.Printf("%s\t%s\t%s\n", name, hex.EncodeToString(hasher.Sum(nil)), strconv.Quote(dump.ForHash(pod)))
	}
}

func main() {
	switch {
	case len(os.Args) == 2 && os.Args[1] == "schema":
		schema()
	case len(os.Args) == 5 && os.Args[1] == "uids":
		uids(os.Args[2], os.Args[3], os.Args[4])
	default:
		fmt.Fprintln(os.Stderr, "usage: static_pod_uid schema | uids NODE DIR SOURCE_DIR")
		os.Exit(2)
	}
}
