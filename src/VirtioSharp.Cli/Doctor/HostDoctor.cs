using System.Text.RegularExpressions;

namespace VirtioSharp.Cli.Doctor;

/// <summary>
/// `virtio-sharp doctor`: checks a host for what the vhost-user back-ends need and says what to change. Shared guest
/// memory (memfd, MAP_SHARED) is required; io_uring, hugepages, KVM and QEMU's version and vhost-user devices are
/// reported with their consequence.
/// </summary>
internal static partial class HostDoctor
{
    /// <summary>The QEMU the testbed and the interop tests use; older ones are untested.</summary>
    public static readonly Version TestedQemu = new(7, 2);

    public static IReadOnlyList<DoctorCheck> Run(DoctorHost host, string qemuName) =>
        [Memfd(host), IoUringCheck(host), Hugepages(host), Kvm(host), .. Qemu(host, qemuName)];

    internal static DoctorCheck Memfd(DoctorHost host)
    {
        if (!host.IsLinux) return new("memfd", DoctorStatus.Fail, "not Linux: vhost-user back-ends need Linux shared memory", "run virtio-sharp on Linux");
        return host.ProbeMemfdSharing() is { } error
            ? new("memfd", DoctorStatus.Fail, $"sealed memfd shared mappings do not work: {error}",
                "use a Linux kernel with memfd_create and sealing (3.17+) and no seccomp filter denying it")
            : new("memfd", DoctorStatus.Ok, "sealed memfd, mapped MAP_SHARED twice, shows one memory (QEMU: -object memory-backend-memfd,...,share=on)");
    }

    internal static DoctorCheck IoUringCheck(DoctorHost host)
    {
        string? disabled = host.ReadFile("/proc/sys/kernel/io_uring_disabled")?.Trim();
        int rc = host.ProbeIoUring();
        if (rc == 0) return new("io_uring", DoctorStatus.Ok, "io_uring rings can be set up (--aio io_uring, the default)");
        string why = host.DescribeErrno(rc) + (disabled is "1" or "2" ? $"; kernel.io_uring_disabled = {disabled}" : "");
        return new("io_uring", DoctorStatus.Warn, $"io_uring is unavailable ({why}): vhost-user-blk falls back to --aio threads",
            disabled is "1" or "2" ? "sysctl -w kernel.io_uring_disabled=0 (or run as a member of kernel.io_uring_group)"
                : "use Linux 5.6+ without a seccomp filter denying io_uring_setup, or pass --aio threads");
    }

    internal static DoctorCheck Hugepages(DoctorHost host)
    {
        string? meminfo = host.ReadFile("/proc/meminfo");
        if (meminfo is null) return new("hugepages", DoctorStatus.Warn, "cannot read /proc/meminfo", "mount /proc");
        long Field(string name) => MeminfoField().Matches(meminfo).FirstOrDefault(m => m.Groups[1].Value == name) is { } m ? long.Parse(m.Groups[2].Value) : -1;
        long total = Field("HugePages_Total"), free = Field("HugePages_Free"), sizeKb = Field("Hugepagesize");
        bool mounted = host.ReadFile("/proc/mounts")?.Split('\n').Any(l => l.Split(' ') is [_, _, "hugetlbfs", ..]) ?? false;
        if (total <= 0)
            return new("hugepages", DoctorStatus.Info,
                "no hugepages reserved: fine for QEMU's memory-backend-memfd and for DPDK with --no-huge; hugepage-backed guests (memory-backend-file on hugetlbfs, memfd hugetlb=on, DPDK without --no-huge) cannot start",
                $"for those: sysctl -w vm.nr_hugepages=N (N x {(sizeKb > 0 ? sizeKb / 1024 : 2)} MiB){(mounted ? "" : " and mount -t hugetlbfs none /dev/hugepages")}");
        return new("hugepages", mounted ? DoctorStatus.Ok : DoctorStatus.Info,
            $"{free} of {total} hugepages of {sizeKb / 1024} MiB free{(mounted ? ", hugetlbfs mounted" : ", no hugetlbfs mounted")}",
            mounted ? null : "for memory-backend-file: mount -t hugetlbfs none /dev/hugepages (memfd hugetlb=on needs no mount)");
    }

    internal static DoctorCheck Kvm(DoctorHost host) => host.Exists("/dev/kvm")
        ? new("kvm", DoctorStatus.Ok, "/dev/kvm present: guests can run with accel=kvm")
        : new("kvm", DoctorStatus.Info, "no /dev/kvm: guests run under TCG (slow, but the back-ends work the same)", "load kvm_intel / kvm_amd, or enable nested virtualization");

    internal static IEnumerable<DoctorCheck> Qemu(DoctorHost host, string name)
    {
        string? qemu = name.Contains('/') ? (File.Exists(name) ? name : null) : host.FindProgram(name);
        if (qemu is null)
        {
            yield return new("qemu", DoctorStatus.Warn, $"{name} not found on PATH: nothing here can start a guest on the back-ends",
                "apt-get install qemu-system-x86 (or pass --qemu PATH)");
            yield break;
        }
        string? version = host.Run(qemu, "--version");
        var m = version is null ? null : QemuVersion().Match(version);
        if (m is null || !m.Success)
        {
            yield return new("qemu", DoctorStatus.Warn, $"{qemu} --version did not answer with a QEMU version", "check the QEMU installation");
            yield break;
        }
        var v = Version.Parse(m.Groups[1].Value);
        yield return v >= TestedQemu
            ? new("qemu", DoctorStatus.Ok, $"{qemu}: QEMU {v}")
            : new("qemu", DoctorStatus.Warn, $"{qemu}: QEMU {v}, older than {TestedQemu} (the version VirtioSharp is tested with)", $"upgrade QEMU to {TestedQemu} or later");
        var devices = (host.Run(qemu, "-device", "help") ?? "").Split('\n')
            .Select(l => DeviceName().Match(l)).Where(d => d.Success).Select(d => d.Groups[1].Value)
            .Where(d => d.StartsWith("vhost-user-", StringComparison.Ordinal)).Distinct().Order().ToList();
        string[] ours = ["vhost-user-blk-pci", "vhost-user-rng-pci"];
        var missing = ours.Where(d => !devices.Contains(d)).ToList();
        yield return missing.Count == 0
            ? new("qemu devices", DoctorStatus.Ok, $"vhost-user PCI devices: {string.Join(", ", devices.Where(d => d.EndsWith("-pci", StringComparison.Ordinal)))}")
            : new("qemu devices", DoctorStatus.Warn,
                $"{string.Join(", ", missing)} missing from `{System.IO.Path.GetFileName(qemu)} -device help`{(devices.Count > 0 ? $" (has {string.Join(", ", devices)})" : "")}",
                "use a QEMU built with vhost-user (Debian's qemu-system-x86 7.2 has both)");
    }

    [GeneratedRegex(@"^(\w+):\s+(\d+)", RegexOptions.Multiline)]
    private static partial Regex MeminfoField();

    [GeneratedRegex(@"QEMU emulator version (\d+\.\d+(?:\.\d+)?)")]
    private static partial Regex QemuVersion();

    [GeneratedRegex(@"^name ""([^""]+)""")]
    private static partial Regex DeviceName();
}
