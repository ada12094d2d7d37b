using VirtioSharp.Cli.Doctor;
using VirtioSharp.Tests.Support;

namespace VirtioSharp.Tests;

/// <summary>
/// `virtio-sharp doctor`: each check against a fake host (files under a temporary root, a fake QEMU script on a
/// temporary PATH, kernel probes answered by the test), and once against this machine, which runs the real guests.
/// </summary>
public sealed class DoctorTests : IDisposable
{
    private readonly string _root = Directory.CreateTempSubdirectory("vs-doctor.").FullName;

    public void Dispose() => Directory.Delete(_root, recursive: true);

    private sealed class FakeHost : DoctorHost
    {
        public string? Memfd;
        public int IoUring;
        public override string? ProbeMemfdSharing() => Memfd;
        public override int ProbeIoUring() => IoUring;
        public override string DescribeErrno(int errno) => $"errno {errno}";
    }

    private FakeHost Host(string meminfo, string mounts = "proc /proc proc rw 0 0\n", string? ioUringDisabled = null, string? qemuVersion = null, string[]? devices = null)
    {
        Write("/proc/meminfo", meminfo);
        Write("/proc/mounts", mounts);
        if (ioUringDisabled is not null) Write("/proc/sys/kernel/io_uring_disabled", ioUringDisabled + "\n");
        string bin = Path.Combine(_root, "bin");
        Directory.CreateDirectory(bin);
        if (qemuVersion is not null)
        {
            string script = Path.Combine(bin, "qemu-system-x86_64");
            var list = string.Concat((devices ?? []).Select(d => $"name \"{d}\", bus PCI\\n"));
            File.WriteAllText(script, $"#!/bin/sh\ncase \"$1\" in\n  --version) echo 'QEMU emulator version {qemuVersion} (Debian 1:{qemuVersion})';;\n  -device) printf 'Storage devices:\\n{list}';;\nesac\n");
            if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(script, UnixFileMode.UserRead | UnixFileMode.UserExecute | UnixFileMode.UserWrite);
        }
        return new FakeHost { Root = _root, Path = bin };
    }

    private void Write(string path, string text)
    {
        string f = _root + path;
        Directory.CreateDirectory(Path.GetDirectoryName(f)!);
        File.WriteAllText(f, text);
    }

    private static DoctorCheck Find(IEnumerable<DoctorCheck> checks, string name) => checks.Single(c => c.Name == name);

    private const string NoHugepages = "MemTotal: 1000 kB\nHugePages_Total:       0\nHugePages_Free:        0\nHugepagesize:       2048 kB\n";

    [Fact]
    public void AnOldQemuWithoutVhostUserRngAndADisabledIoUringAreWarnedWithTheirFixes()
    {
        var host = Host(NoHugepages, ioUringDisabled: "2", qemuVersion: "6.2.0", devices: ["virtio-blk-pci", "vhost-user-blk-pci"]);
        host.IoUring = 1;   // EPERM
        var checks = HostDoctor.Run(host, "qemu-system-x86_64");

        var io = Find(checks, "io_uring");
        Assert.Equal(DoctorStatus.Warn, io.Status);
        Assert.Contains("kernel.io_uring_disabled = 2", io.Finding);
        Assert.Contains("sysctl -w kernel.io_uring_disabled=0", io.Fix);

        var hp = Find(checks, "hugepages");
        Assert.Equal(DoctorStatus.Info, hp.Status);
        Assert.Contains("vm.nr_hugepages", hp.Fix);
        Assert.Contains("mount -t hugetlbfs", hp.Fix);

        var qemu = Find(checks, "qemu");
        Assert.Equal(DoctorStatus.Warn, qemu.Status);
        Assert.Contains("QEMU 6.2.0, older than 7.2", qemu.Finding);
        Assert.Contains("upgrade QEMU", qemu.Fix);

        var devices = Find(checks, "qemu devices");
        Assert.Equal(DoctorStatus.Warn, devices.Status);
        Assert.StartsWith("vhost-user-rng-pci missing", devices.Finding);
        Assert.DoesNotContain("vhost-user-blk-pci missing", devices.Finding);

        Assert.Equal(DoctorStatus.Ok, Find(checks, "memfd").Status);
        var output = new StringWriter();
        Assert.Equal(0, DoctorCommand.Print(checks, output));   // warnings only: still ready
        Assert.Contains("ready, with 3 warning(s)", output.ToString());
    }

    [Fact]
    public void BrokenMemfdSharingFailsAndExitsOne()
    {
        var host = Host(NoHugepages, qemuVersion: "7.2.5", devices: ["vhost-user-blk-pci", "vhost-user-rng-pci"]);
        host.Memfd = "memfd_create failed: Function not implemented (errno 38)";
        var checks = HostDoctor.Run(host, "qemu-system-x86_64");
        var memfd = Find(checks, "memfd");
        Assert.Equal(DoctorStatus.Fail, memfd.Status);
        Assert.Contains("errno 38", memfd.Finding);
        Assert.NotNull(memfd.Fix);
        Assert.Equal(DoctorStatus.Ok, Find(checks, "qemu").Status);
        Assert.Equal(DoctorStatus.Ok, Find(checks, "qemu devices").Status);
        var output = new StringWriter();
        Assert.Equal(1, DoctorCommand.Print(checks, output));
        Assert.Contains("1 check(s) failed", output.ToString());
    }

    [Fact]
    public void NoQemuOnPathSaysWhatToInstall()
    {
        var checks = HostDoctor.Run(Host(NoHugepages), "qemu-system-x86_64");
        var qemu = Find(checks, "qemu");
        Assert.Equal(DoctorStatus.Warn, qemu.Status);
        Assert.Contains("not found", qemu.Finding);
        Assert.Contains("apt-get install qemu-system-x86", qemu.Fix);
        Assert.DoesNotContain(checks, c => c.Name == "qemu devices");
    }

    [Fact]
    public void ReservedAndMountedHugepagesAreCounted()
    {
        var host = Host("HugePages_Total:     512\nHugePages_Free:      500\nHugepagesize:       2048 kB\n",
            "hugetlbfs /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n");
        var hp = Find(HostDoctor.Run(host, "qemu-system-x86_64"), "hugepages");
        Assert.Equal(DoctorStatus.Ok, hp.Status);
        Assert.Equal("500 of 512 hugepages of 2 MiB free, hugetlbfs mounted", hp.Finding);
        Assert.Null(hp.Fix);
    }

    /// <summary>This machine boots the real guests: memfd sharing, QEMU 7.2 and its vhost-user devices must be found.</summary>
    [Fact]
    public void ThisHostIsReadyForTheBackEnds()
    {
        var (rc, o, e) = InProcessCli.Run("doctor");
        Assert.True(rc == 0, o + e);
        Assert.Matches(@"(?m)^ok\s+memfd\s", o);
        Assert.Matches(@"(?m)^ok\s+qemu\s+\S+: QEMU \d+\.\d+", o);
        Assert.Matches(@"(?m)^ok\s+qemu devices\s.*vhost-user-blk-pci.*vhost-user-rng-pci", o);
    }
}
