using System.Buffers.Binary;
using System.Net.Sockets;
using VirtioSharp.Spec;
using VirtioSharp.Tests.Support;
using VirtioSharp.VhostUser.Backend;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;
using static VirtioSharp.Tests.Support.HostileSession;

namespace VirtioSharp.Tests;

/// <summary>
/// Descriptors a hostile front-end hands over: each is checked for what it really is on arrival (eventfd, sealed
/// memory file, connected stream socket) and refused with a message naming it; none can stall a ring worker or the
/// message loop, crash the back-end by shrinking, or stay open after its message was refused.
/// </summary>
public class VhostPeerFdTests
{
    private static void AssertRefused(VhostRig rig, RawClient c, params string[] fragments)
    {
        Assert.True(c.IsClosedByPeer(), "the back-end should have closed the connection");
        Assert.True(rig.WaitClosed(1));
        var line = rig.Log.Lines.FirstOrDefault(l => l.Contains("closing the connection"));
        Assert.NotNull(line);
        foreach (var f in fragments) Assert.Contains(f, line, StringComparison.OrdinalIgnoreCase);
        Assert.Equal(0, rig.Server.Stats.HandlerFaults);
        using var next = rig.Connect();
        Assert.True(VirtioFeature.Has(next.AskU64(VhostRequest.GetFeatures), VirtioFeature.Version1), "a new connection is served normally");
    }

    /// <summary>A descriptor of <paramref name="kind"/> and what /proc calls it.</summary>
    private static (SafeFd Fd, string Name) Make(string kind)
    {
        switch (kind)
        {
            case "directory": return (Open("/tmp", LibC.O_RDONLY | LibC.O_DIRECTORY), "/tmp");
            case "/dev/zero": return (Open("/dev/zero", LibC.O_RDWR), "/dev/zero");
            case "memfd": return (MemFd.Create("probe", 4096), "memfd:probe");
            case "pipe without writer":
            {
                var (r, w) = Pipe();
                w.Dispose();
                return (r, "pipe:");
            }
            case "hung-up socket":
            {
                var (a, b) = SafeFd.SocketPair();
                b.Dispose();
                return (a, "socket:");
            }
            case "eventfd": return (EventFd.Create().Handle, "eventfd");
            case "listening socket":
            {
                var s = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                s.Bind(new UnixDomainSocketEndPoint(Path.Combine(Path.GetTempPath(), $"vs-listen-{Guid.NewGuid():N}")));
                s.Listen(1);
                return (SafeFd.DupInheritable(s.SafeHandle), "listening");
            }
            case "datagram socket":
            {
                var (a, _) = SafeFd.SocketPair(LibC.SOCK_DGRAM);
                return (a, "datagram");
            }
            default: throw new ArgumentException(kind);
        }
    }

    private static SafeFd Open(string path, int flags)
    {
        int fd = LibC.Open(path, flags | LibC.O_CLOEXEC, 0);
        Assert.True(fd >= 0, $"open {path}: {LibC.Describe(LibC.Errno)}");
        return new SafeFd(fd);
    }

    private static (SafeFd Read, SafeFd Write) Pipe()
    {
        var s = new System.IO.Pipes.AnonymousPipeServerStream(System.IO.Pipes.PipeDirection.Out);
        var r = SafeFd.DupInheritable(s.ClientSafePipeHandle);
        var w = SafeFd.DupInheritable(s.SafePipeHandle);
        s.Dispose();
        return (r, w);
    }

    [Theory]
    [InlineData((uint)VhostRequest.SetVringKick, "directory")]
    [InlineData((uint)VhostRequest.SetVringKick, "/dev/zero")]
    [InlineData((uint)VhostRequest.SetVringKick, "memfd")]
    [InlineData((uint)VhostRequest.SetVringKick, "pipe without writer")]
    [InlineData((uint)VhostRequest.SetVringKick, "hung-up socket")]
    [InlineData((uint)VhostRequest.SetVringCall, "/dev/zero")]
    [InlineData((uint)VhostRequest.SetVringCall, "memfd")]
    [InlineData((uint)VhostRequest.SetVringCall, "pipe without writer")]
    [InlineData((uint)VhostRequest.SetVringErr, "directory")]
    [InlineData((uint)VhostRequest.SetVringErr, "hung-up socket")]
    public void RingFdThatIsNotAnEventfdIsRefusedByName(uint req, string kind)
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        using var mem = MemFd.Create("mem", MemBytes);
        ConfigureRing(c, mem);
        var (fd, name) = Make(kind);
        using var _ = fd;
        c.Send((VhostRequest)req, RawClient.U64(0), [fd]);
        AssertRefused(rig, c, "not an eventfd", name, "vring 0");
    }

    [Theory]
    [InlineData("memfd")]
    [InlineData("listening socket")]
    [InlineData("datagram socket")]
    [InlineData("eventfd")]
    public void BackendChannelThatIsNotAConnectedStreamSocketIsRefused(string kind)
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        var (fd, _) = Make(kind);
        using var __ = fd;
        c.Send(VhostRequest.SetBackendReqFd, ReadOnlySpan<byte>.Empty, [fd]);
        AssertRefused(rig, c, "SET_BACKEND_REQ_FD");
    }

    [Theory]
    [InlineData("directory", "not a memory file")]
    [InlineData("/dev/zero", "character device")]
    [InlineData("eventfd", "not a memory file")]
    [InlineData("hung-up socket", "socket")]
    public void MemoryFdThatIsNotAFileIsRefused(string kind, string fragment)
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        var (fd, _) = Make(kind);
        using var _ = fd;
        c.Send(VhostRequest.SetMemTable, MemTable(new VhostMemoryRegion(0, MemBytes, UserAddr, 0)), [fd]);
        AssertRefused(rig, c, "memory region 0", fragment);
    }

    /// <summary>Where a file the peer can shrink comes from: an unsealed memfd, a tmpfs file, a file on disk.</summary>
    private static SafeFd Unsealed(string kind, ulong size)
    {
        if (kind == "unsealed memfd") return MemFd.Create("unsealed", size, seals: 0);
        string dir = kind == "tmpfs file" ? "/dev/shm" : "/var/tmp";
        string path = Path.Combine(dir, $"vs-unsealed-{Guid.NewGuid():N}");
        using (var f = File.Create(path)) f.SetLength((long)size);
        try { return Open(path, LibC.O_RDWR); }
        finally { File.Delete(path); }
    }

    /// <summary>
    /// The crash the issue found: a front-end shrinks a region's file after SET_MEM_TABLE and kicks, and the back-end
    /// dies of SIGBUS. Such files are refused, and the refusal says which option accepts them.
    /// </summary>
    [Theory]
    [InlineData("unsealed memfd", (uint)VhostRequest.SetMemTable)]
    [InlineData("tmpfs file", (uint)VhostRequest.SetMemTable)]
    [InlineData("disk file", (uint)VhostRequest.SetMemTable)]
    [InlineData("unsealed memfd", (uint)VhostRequest.AddMemReg)]
    public void MemoryTheFrontEndCouldShrinkIsRefusedWithTheOptionToUse(string kind, uint req)
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        using var fd = Unsealed(kind, MemBytes);
        var region = new VhostMemoryRegion(0, MemBytes, UserAddr, 0);
        if ((VhostRequest)req == VhostRequest.SetMemTable) c.Send(VhostRequest.SetMemTable, MemTable(region), [fd]);
        else
        {
            c.Send(VhostRequest.SetProtocolFeatures, 1UL << VhostProtocolFeature.ConfigureMemSlots);
            c.Send(VhostRequest.AddMemReg, OneRegion(region), [fd]);
        }
        AssertRefused(rig, c, "memory region 0", "shrink", "--allow-unsealed-memory", "memory-backend-memfd");
    }

    [Fact]
    public void UnsealedInflightRegionIsRefused()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        c.Send(VhostRequest.SetProtocolFeatures, 1UL << VhostProtocolFeature.InflightShmfd);
        c.Send(VhostRequest.SetFeatures, VirtioFeature.Bit(VirtioFeature.Version1));
        ulong size = VhostInflightState.QueueBytes(16, packed: false);
        using var fd = MemFd.Create("inflight", size, seals: 0);
        var p = new byte[InflightDescription.WireSize];
        new InflightDescription(size, 0, 1, 16).Write(p);
        c.Send(VhostRequest.SetInflightFd, p, [fd]);
        AssertRefused(rig, c, "SET_INFLIGHT_FD", "--allow-unsealed-memory");
    }

    [Fact]
    public void AllowUnsealedMemoryAcceptsTheRegionAndSaysTheRisk()
    {
        using var rig = new VhostRig(options: new VhostUserBackendOptions { AllowUnsealedMemory = true });
        using var c = rig.Connect();
        using var fd = MemFd.Create("unsealed", MemBytes, seals: 0);
        c.Send(VhostRequest.SetMemTable, MemTable(new VhostMemoryRegion(0, MemBytes, UserAddr, 0)), [fd]);
        Assert.Equal(VirtioFeature.Bit(VirtioFeature.Version1), c.AskU64(VhostRequest.GetFeatures) & VirtioFeature.Bit(VirtioFeature.Version1));
        Assert.Contains(rig.Log.Lines, l => l.Contains("not sealed against shrinking") && l.Contains("crashes this back-end"));
        Assert.Contains(rig.Log.Lines, l => l.Contains("memory table: gpa 0x0+0x100000"));
    }

    /// <summary>What the back-end relies on: once sealed, the front-end's own ftruncate of the region fails.</summary>
    [Fact]
    public void SealedMemoryCannotBeShrunkByTheFrontEnd()
    {
        using var fd = MemFd.Create("sealed", MemBytes);
        Assert.NotEqual(0, LibC.FTruncate(fd.Fd, 4096));
        Assert.Equal((long)MemBytes, fd.GetSize());
    }
}
