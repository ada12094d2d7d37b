using System.Buffers.Binary;
using VirtioSharp.Spec;
using VirtioSharp.Tests.Support;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;
using static VirtioSharp.Tests.Support.HostileSession;

namespace VirtioSharp.Tests;

/// <summary>
/// The migration messages of vhost-user.rst ("Migration"): VHOST_F_LOG_ALL and LOG_SHMFD offered, SET_LOG_BASE mapped
/// only after the checks every shared memory gets (and answered), SET_LOG_FD an eventfd, the LOG flag of SET_VRING_ADDR
/// and the LOG_ALL toggle of SET_FEATURES accepted while the rings run — and a real request's writes marked in the log.
/// </summary>
public unsafe class VhostDirtyLogProtocolTests
{
    private const ulong LogAll = 1UL << 26;
    private const ulong LogShmfd = 1UL << VhostProtocolFeature.LogShmfd;
    private const ulong LogBytes = 4096;

    private static byte[] LogDescription(ulong size, ulong offset)
    {
        var b = new byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(b, size);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8), offset);
        return b;
    }

    /// <summary>SET_VRING_ADDR for ring 0 as <see cref="ConfigureRing0"/> sets it, with <paramref name="flags"/> and <paramref name="log"/>.</summary>
    private static byte[] Ring0Addr(uint flags, ulong log = 0, ulong used = UserAddr + 0x2000)
    {
        var addr = new byte[40];
        BinaryPrimitives.WriteUInt32LittleEndian(addr.AsSpan(4), flags);
        BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(8), UserAddr);
        BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(16), used);
        BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(24), UserAddr + 0x1000);
        BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(32), log);
        return addr;
    }

    private static void SetLogBase(RawClient c, SafeFd log, ulong size = LogBytes, ulong offset = 0)
    {
        c.Send(VhostRequest.SetLogBase, LogDescription(size, offset), [log]);
        var r = c.Receive();
        Assert.NotNull(r);
        Assert.Equal((uint)VhostRequest.SetLogBase, r.Value.Header.Request);   // QEMU reads this reply
        Assert.Equal(VhostHeader.Version | VhostHeader.ReplyFlag, r.Value.Header.Flags);
    }

    /// <summary>Descriptors in this process naming the memfd <paramref name="name"/>.</summary>
    private static int FdsNaming(string name) =>
        Directory.GetFiles("/proc/self/fd").Count(f => { try { return new FileInfo(f).LinkTarget?.Contains($"/memfd:{name} ") == true; } catch (IOException) { return false; } });

    private static string[] MappingsOf(string name) =>
        File.ReadAllLines("/proc/self/maps").Where(l => l.Contains($"/memfd:{name} ")).ToArray();

    private static List<int> DirtyPages(ReadOnlySpan<byte> log)
    {
        var pages = new List<int>();
        for (int i = 0; i < log.Length; i++)
            for (int b = 0; b < 8; b++)
                if ((log[i] & (1 << b)) != 0) pages.Add(i * 8 + b);
        return pages;
    }

    private static void WaitUsed(Span<byte> m, ushort idx)
    {
        var end = Environment.TickCount64 + 5000;
        while (BinaryPrimitives.ReadUInt16LittleEndian(m[0x2002..]) != idx && Environment.TickCount64 < end) Thread.Sleep(5);
        Assert.Equal(idx, BinaryPrimitives.ReadUInt16LittleEndian(m[0x2002..]));
    }

    [Fact]
    public void TheBackEndOffersLogAllAndLogShmfd()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        Assert.Equal(LogAll, c.AskU64(VhostRequest.GetFeatures) & LogAll);
        Assert.Equal(LogShmfd, c.AskU64(VhostRequest.GetProtocolFeatures) & LogShmfd);
    }

    /// <summary>
    /// A guest read request served with the log off marks nothing; QEMU's migration start (SET_FEATURES with LOG_ALL and
    /// SET_VRING_ADDR with the LOG flag while the ring runs) turns it on, and the next request marks exactly the pages the
    /// device wrote: the data buffer, the status byte's page and the used ring — not the request header or the rings it
    /// only read.
    /// </summary>
    [Fact]
    public void LoggingTurnedOnWhileTheRingRunsMarksExactlyThePagesTheDeviceWrote()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        using var mem = MemFd.Create("mem", MemBytes);
        using var map = MappedRegion.Map(mem, MemBytes, 0);
        var m = new Span<byte>((void*)map.Address, (int)MemBytes);
        string name = $"log-{Guid.NewGuid():N}"[..16];
        using var logFd = MemFd.Create(name, LogBytes);
        using var logMap = MappedRegion.Map(logFd, LogBytes, 0);
        var log = new Span<byte>((void*)logMap.Address, (int)LogBytes);
        WriteReadRequest(m);
        ConfigureRing(c, mem, protocol: LogShmfd);
        SetLogBase(c, logFd);
        Assert.Equal(1, FdsNaming(name));                 // the back-end keeps the mapping, not the fd
        Assert.Equal(2, MappingsOf(name).Length);        // ours and the back-end's
        using var kick = EventFd.Create();
        c.Send(VhostRequest.SetVringKick, RawClient.U64(0), [kick.Handle]);
        kick.Signal();
        WaitUsed(m, 1);
        Assert.Empty(DirtyPages(log));

        // Migration starts: LOG_ALL and the ring's LOG flag, with the ring running.
        c.Send(VhostRequest.SetFeatures, VirtioFeature.Bit(VirtioFeature.Version1) | LogAll);
        c.Send(VhostRequest.SetVringAddr, Ring0Addr(flags: 1, log: 0x2000));   // VHOST_VRING_F_LOG; log_guest_addr: the used ring's GPA
        c.AskU64(VhostRequest.GetFeatures);               // both handled (QEMU waits for SET_FEATURES' reply likewise)
        m[0x6000] = 0xFF;
        BinaryPrimitives.WriteUInt16LittleEndian(m[0x1006..], 0);   // ring[1] = head 0 again
        BinaryPrimitives.WriteUInt16LittleEndian(m[0x1002..], 2);
        kick.Signal();
        WaitUsed(m, 2);
        c.Send(VhostRequest.GetVringBase, RawClient.State(0, 0));
        Assert.NotNull(c.Receive());
        Assert.Equal([2, 5, 6], DirtyPages(log));        // used ring, data, status
        Assert.Equal(0, m[0x6000]);
        Assert.DoesNotContain(rig.Log.Lines, l => l.Contains("closing the connection"));
        Assert.Contains(rig.Log.Lines, l => l.Contains("dirty logging on"));
        Assert.Equal(3, rig.Server.Current!.DirtyLogCounters.Pages);
    }

    [Fact]
    public void ASecondLogReplacesTheFirstAndReleasesItsMapping()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        c.Send(VhostRequest.SetProtocolFeatures, LogShmfd);
        string first = $"la-{Guid.NewGuid():N}"[..16], second = $"lb-{Guid.NewGuid():N}"[..16];
        using var a = MemFd.Create(first, LogBytes);
        using var b = MemFd.Create(second, 2 * LogBytes);
        SetLogBase(c, a);
        Assert.Single(MappingsOf(first));
        SetLogBase(c, b, 2 * LogBytes);
        Assert.Empty(MappingsOf(first));
        Assert.Single(MappingsOf(second));
        Assert.Equal(1, FdsNaming(first));
        Assert.Equal(2 * LogBytes, rig.Server.Current!.DirtyLog.Bytes);
    }

    public static TheoryData<string, string> BadLogs => new()
    {
        { "LOG_SHMFD not negotiated", "LOG_SHMFD" },
        { "size 0", "log size 0" },
        { "file smaller than the log", "needs 8192 bytes" },
        { "offset + size overflows", "overflows" },
        { "larger than the limit", "limit" },
        { "unsealed memfd", "F_SEAL_SHRINK" },
        { "eventfd", "not a memory file" },
        { "no fd", "expected 1 file descriptor" },
    };

    [Theory]
    [MemberData(nameof(BadLogs))]
    public void AMalformedLogIsRefusedAndItsFdClosed(string what, string message)
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        string name = $"bad-{Guid.NewGuid():N}"[..16];
        c.Send(VhostRequest.SetProtocolFeatures, what == "LOG_SHMFD not negotiated" ? 0 : LogShmfd);
        using var sealedFd = MemFd.Create(name, LogBytes);
        using var unsealedFd = MemFd.Create(name, LogBytes, seals: 0);
        using var ev = EventFd.Create();
        var (size, offset, fd) = what switch
        {
            "size 0" => (0UL, 0UL, sealedFd),
            "file smaller than the log" => (2 * LogBytes, 0UL, sealedFd),
            "offset + size overflows" => (LogBytes, ulong.MaxValue - 100, sealedFd),
            "larger than the limit" => (2UL << 30, 0UL, sealedFd),
            "unsealed memfd" => (LogBytes, 0UL, unsealedFd),
            "eventfd" => (LogBytes, 0UL, ev.Handle),
            _ => (LogBytes, 0UL, sealedFd),
        };
        c.Send(VhostRequest.SetLogBase, LogDescription(size, offset), what == "no fd" ? [] : [fd]);
        Assert.True(c.IsClosedByPeer(), $"{what}: the back-end should have closed the connection");
        Assert.True(rig.WaitClosed(1));
        var line = rig.Log.Lines.FirstOrDefault(l => l.Contains("closing the connection"));
        Assert.NotNull(line);
        Assert.Contains(message, line);
        Assert.Equal(0, rig.Server.Stats.HandlerFaults);
        Assert.Empty(MappingsOf(name));
        Assert.Equal(2, FdsNaming(name));                 // only this test's own two memfds
    }

    [Fact]
    public void SetLogFdTakesAnEventfdAndRefusesAnythingElse()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        using var ev = EventFd.Create();
        c.Send(VhostRequest.SetLogFd, ReadOnlySpan<byte>.Empty, [ev.Handle]);
        Assert.True(VirtioFeature.Has(c.AskU64(VhostRequest.GetFeatures), VirtioFeature.Version1));
        using var file = MemFd.Create("notev", 4096);
        c.Send(VhostRequest.SetLogFd, ReadOnlySpan<byte>.Empty, [file]);
        Assert.True(c.IsClosedByPeer());
        Assert.Contains(rig.Log.Lines, l => l.Contains("closing the connection") && l.Contains("SET_LOG_FD") && l.Contains("not an eventfd"));
    }

    public static TheoryData<string, string> BadRunningChanges => new()
    {
        { "another feature", "features changed while rings run" },
        { "new ring addresses", "only VHOST_VRING_F_LOG may change" },
        { "unknown ring flag", "only VHOST_VRING_F_LOG (0x1) is defined" },
    };

    /// <summary>While a ring runs only logging may change: another feature or new ring addresses are refused.</summary>
    [Theory]
    [MemberData(nameof(BadRunningChanges))]
    public void WhileTheRingRunsOnlyLoggingMayChange(string what, string message)
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        using var mem = MemFd.Create("mem", MemBytes);
        ConfigureRing(c, mem);
        using var kick = EventFd.Create();
        c.Send(VhostRequest.SetVringKick, RawClient.U64(0), [kick.Handle]);
        c.Send(VhostRequest.SetFeatures, VirtioFeature.Bit(VirtioFeature.Version1) | LogAll);   // allowed
        Assert.True(VirtioFeature.Has(c.AskU64(VhostRequest.GetFeatures), VirtioFeature.Version1));
        switch (what)
        {
            case "another feature":
                c.Send(VhostRequest.SetFeatures, VirtioFeature.Bit(VirtioFeature.Version1) | LogAll | VirtioFeature.Bit(VirtioFeature.EventIdx));
                break;
            case "new ring addresses":
                c.Send(VhostRequest.SetVringAddr, Ring0Addr(flags: 1, used: UserAddr + 0x3000));
                break;
            default:
                c.Send(VhostRequest.SetVringAddr, Ring0Addr(flags: 3));
                break;
        }
        Assert.True(c.IsClosedByPeer());
        Assert.Contains(rig.Log.Lines, l => l.Contains("closing the connection") && l.Contains(message));
        Assert.Equal(0, rig.Server.Stats.HandlerFaults);
    }

    /// <summary>
    /// QEMU 7.2 stops a device for the switchover with SET_STATUS 0, SET_VRING_ENABLE 0, then GET_VRING_BASE, whose
    /// answer the destination resumes from: the status reset must not lose the ring's position.
    /// </summary>
    [Fact]
    public void TheSwitchoverStopAnswersWhereTheRingStood()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        using var mem = MemFd.Create("mem", MemBytes);
        using var map = MappedRegion.Map(mem, MemBytes, 0);
        var m = new Span<byte>((void*)map.Address, (int)MemBytes);
        WriteReadRequest(m);
        ConfigureRing(c, mem);
        using var kick = EventFd.Create();
        c.Send(VhostRequest.SetVringKick, RawClient.U64(0), [kick.Handle]);
        kick.Signal();
        WaitUsed(m, 1);
        c.Send(VhostRequest.SetStatus, 0UL);
        c.Send(VhostRequest.SetVringEnable, RawClient.State(0, 0));
        c.Send(VhostRequest.GetVringBase, RawClient.State(0, 0));
        var r = c.Receive();
        Assert.NotNull(r);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(r.Value.Body.AsSpan(4)));
    }

    /// <summary>Used-ring writes are logged where they land; a log_guest_addr elsewhere is reported, not followed.</summary>
    [Fact]
    public void ALogGuestAddrThatIsNotTheUsedRingIsReported()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        using var mem = MemFd.Create("mem", MemBytes);
        ConfigureRing(c, mem);
        c.Send(VhostRequest.SetVringAddr, Ring0Addr(flags: 1, log: 0x2000));
        c.Send(VhostRequest.SetVringAddr, Ring0Addr(flags: 1, log: 0x9000));
        c.AskU64(VhostRequest.GetFeatures);
        var warnings = rig.Log.Lines.Where(l => l.Contains("log_guest_addr")).ToList();
        Assert.Single(warnings);
        Assert.Contains("0x9000", warnings[0]);
        Assert.Contains("0x2000", warnings[0]);
    }
}
