// Command csi-mock-driver serves upstream's CSI mock driver
// (k8s.io/kubernetes/test/e2e/storage/drivers/csi-test/mock) on a unix socket for the
// kubelet's CSI tests, and registers it with the kubelet the way node-driver-registrar
// does: a pluginregistration v1 server on a socket in <root-dir>/plugins_registry.
//
// The mock only records publications; a real driver mounts something at the target.
// This one bind-mounts <data-dir>/<volume id> there, so a pod's writes outlive it as on
// real storage, and binds a loop device over <data-dir>/<volume id>.img to the target
// file of a raw block volume. Every CSI call is printed as one line, "gRPCCall: <method> <request>",
// so a test can check their order.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
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
	csi.RegisterNodeServer(csiServer, &mountingNode{Service: svc, dataDir: *dataDir, ephemeral: map[string]bool{}, loops: map[string]string{}})
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
	// loops are the block volumes' loop devices by volume ID.
	loops map[string]string
}

func (n *mountingNode) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	if req.GetVolumeCapability().GetBlock() != nil {
		return n.publishBlock(req)
	}
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
	if info, err := os.Stat(target); err == nil && !info.IsDir() {
		// A block volume's publish file: removed, its loop device detached.
		_ = os.Remove(target)
		n.lock.Lock()
		dev := n.loops[req.GetVolumeId()]
		delete(n.loops, req.GetVolumeId())
		n.lock.Unlock()
		if dev != "" {
			_ = exec.Command("losetup", "-d", dev).Run()
		}
		return &csi.NodeUnpublishVolumeResponse{}, nil
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

// publishBlock gives the volume a loop device over <data-dir>/<volume id>.img (16 MiB)
// and binds it to the target file, as a real driver binds its block device.
func (n *mountingNode) publishBlock(req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	target := req.GetTargetPath()
	n.lock.Lock()
	defer n.lock.Unlock()
	dev := n.loops[req.GetVolumeId()]
	if dev == "" {
		image := filepath.Join(n.dataDir, req.GetVolumeId()+".img")
		if err := os.MkdirAll(n.dataDir, 0o755); err != nil {
			return nil, status.Errorf(codes.Internal, "cannot create %s: %v", n.dataDir, err)
		}
		f, err := os.OpenFile(image, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "cannot create %s: %v", image, err)
		}
		err = f.Truncate(16 << 20)
		f.Close()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "cannot size %s: %v", image, err)
		}
		out, err := exec.Command("losetup", "--find", "--show", image).Output()
		if err != nil {
			return nil, status.Errorf(codes.Internal, "losetup %s: %v", image, err)
		}
		dev = strings.TrimSpace(string(out))
		n.loops[req.GetVolumeId()] = dev
	}
	if !mounted(target) {
		f, err := os.OpenFile(target, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "cannot create %s: %v", target, err)
		}
		f.Close()
		if err := syscall.Mount(dev, target, "", syscall.MS_BIND, ""); err != nil {
			return nil, status.Errorf(codes.Internal, "cannot bind %s to %s: %v", dev, target, err)
		}
	}
	fmt.Printf("block volume %s: %s at %s\n", req.GetVolumeId(), dev, target)
	return &csi.NodePublishVolumeResponse{}, nil
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
