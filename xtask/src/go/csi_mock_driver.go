// Command csi-mock-driver serves upstream's CSI mock driver
// (k8s.io/kubernetes/test/e2e/storage/drivers/csi-test/mock) on a unix socket for the
// kubelet's CSI tests, and registers it with the kubelet the way node-driver-registrar
// does: a pluginregistration v1 server on a socket in <root-dir>/plugins_registry.
//
// The mock only records publications; a real driver mounts something at the target.
// This one bind-mounts <data-dir>/<volume id> there, so a pod's writes outlive it as on
// real storage. Every CSI call is printed as one line, "gRPCCall: <method> <request>",
// so a test can check their order.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
	"k8s.io/kubernetes/test/e2e/storage/drivers/csi-test/mock/service"
)

func main() {
	name := flag.String("name", service.Name, "the driver's name")
	endpoint := flag.String("endpoint", "", "unix socket to serve CSI on")
	registration := flag.String("registration", "", "unix socket to serve plugin registration on (in the kubelet's plugins_registry)")
	dataDir := flag.String("data-dir", "", "directory holding each volume's data")
	flag.Parse()
	if *endpoint == "" || *registration == "" || *dataDir == "" {
		fmt.Fprintln(os.Stderr, "--endpoint, --registration and --data-dir are required")
		os.Exit(2)
	}
	svc := service.New(service.Config{
		DriverName:           *name,
		EnableTopology:       true,
		PermissiveTargetPath: true,
	})
	csiServer := grpc.NewServer(grpc.UnaryInterceptor(logCalls))
	csi.RegisterIdentityServer(csiServer, svc)
	csi.RegisterControllerServer(csiServer, svc)
	csi.RegisterNodeServer(csiServer, &mountingNode{Service: svc, dataDir: *dataDir, ephemeral: map[string]bool{}})
	go serve(csiServer, *endpoint)

	regServer := grpc.NewServer()
	registerapi.RegisterRegistrationServer(regServer, &registrar{name: *name, endpoint: *endpoint})
	serve(regServer, *registration)
}

func serve(s *grpc.Server, path string) {
	_ = os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		fmt.Fprintf(os.Stderr, "cannot listen on %s: %v\n", path, err)
		os.Exit(1)
	}
	fmt.Printf("serving on %s\n", path)
	if err := s.Serve(l); err != nil {
		fmt.Fprintf(os.Stderr, "serving %s: %v\n", path, err)
		os.Exit(1)
	}
}

func logCalls(ctx context.Context, req interface{}, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (interface{}, error) {
	rsp, err := handler(ctx, req)
	body, _ := json.Marshal(req)
	if err != nil {
		fmt.Printf("gRPCCall: %s %s error: %v\n", info.FullMethod, body, err)
	} else {
		fmt.Printf("gRPCCall: %s %s\n", info.FullMethod, body)
	}
	return rsp, err
}

type registrar struct {
	registerapi.UnimplementedRegistrationServer
	name, endpoint string
}

func (r *registrar) GetInfo(ctx context.Context, req *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	return &registerapi.PluginInfo{
		Type:              registerapi.CSIPlugin,
		Name:              r.name,
		Endpoint:          r.endpoint,
		SupportedVersions: []string{"1.0.0"},
	}, nil
}

func (r *registrar) NotifyRegistrationStatus(ctx context.Context, s *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	fmt.Printf("registration status: registered=%v error=%q\n", s.PluginRegistered, s.Error)
	return &registerapi.RegistrationStatusResponse{}, nil
}

// mountingNode is the mock's node service with real mounts. Ephemeral inline volumes
// are served here alone: the mock's own NodePublishVolume dereferences a nil volume for
// them.
type mountingNode struct {
	service.Service
	dataDir string

	lock      sync.Mutex
	ephemeral map[string]bool
}

func (n *mountingNode) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	rsp := &csi.NodePublishVolumeResponse{}
	if req.GetVolumeContext()["csi.storage.k8s.io/ephemeral"] == "true" {
		if req.GetVolumeId() == "" || req.GetTargetPath() == "" || req.GetVolumeCapability() == nil {
			return nil, status.Error(codes.InvalidArgument, "volume ID, target path and capability are required")
		}
		n.lock.Lock()
		n.ephemeral[req.GetVolumeId()] = true
		n.lock.Unlock()
	} else {
		var err error
		if rsp, err = n.Service.NodePublishVolume(ctx, req); err != nil {
			return nil, err
		}
	}
	target := req.GetTargetPath()
	if err := os.MkdirAll(target, 0o750); err != nil {
		return nil, status.Errorf(codes.Internal, "cannot create %s: %v", target, err)
	}
	if mounted(target) {
		return rsp, nil
	}
	source := filepath.Join(n.dataDir, req.GetVolumeId())
	if err := os.MkdirAll(source, 0o777); err != nil {
		return nil, status.Errorf(codes.Internal, "cannot create %s: %v", source, err)
	}
	if err := syscall.Mount(source, target, "", syscall.MS_BIND, ""); err != nil {
		return nil, status.Errorf(codes.Internal, "cannot mount %s at %s: %v", source, target, err)
	}
	if req.GetReadonly() {
		if err := syscall.Mount("", target, "", syscall.MS_BIND|syscall.MS_REMOUNT|syscall.MS_RDONLY, ""); err != nil {
			_ = syscall.Unmount(target, 0)
			return nil, status.Errorf(codes.Internal, "cannot make %s read-only: %v", target, err)
		}
	}
	return rsp, nil
}

func (n *mountingNode) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	target := req.GetTargetPath()
	if mounted(target) {
		if err := syscall.Unmount(target, 0); err != nil {
			return nil, status.Errorf(codes.Internal, "cannot unmount %s: %v", target, err)
		}
	}
	n.lock.Lock()
	ephemeral := n.ephemeral[req.GetVolumeId()]
	delete(n.ephemeral, req.GetVolumeId())
	n.lock.Unlock()
	if ephemeral {
		return &csi.NodeUnpublishVolumeResponse{}, nil
	}
	return n.Service.NodeUnpublishVolume(ctx, req)
}

// mounted tells whether path is a mount point. A bind mount from the same filesystem
// keeps its device number, so only the mount table can tell.
func mounted(path string) bool {
	table, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return false
	}
	clean := filepath.Clean(path)
	for _, line := range strings.Split(string(table), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 4 && fields[4] == clean {
			return true
		}
	}
	return false
}
