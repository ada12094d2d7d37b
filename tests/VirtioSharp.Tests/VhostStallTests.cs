using System.Buffers.Binary;
using System.Diagnostics;
using VirtioSharp.Spec;
using VirtioSharp.Tests.Support;
using VirtioSharp.VhostUser.Backend;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;
using static VirtioSharp.Tests.Support.HostileSession;

namespace VirtioSharp.Tests;

/// <summary>
/// A front-end that stops reading or fills a counter must not wedge a ring worker, and through it GET_VRING_BASE, the
/// connection and the daemon: sends are bounded, IOTLB waits end when their ring stops, call writes never block.
/// </summary>
public class VhostStallTests
{
    private static (long Ms, byte[]? Reply) TimedGetVringBase(RawClient c)
    {
        var sw = Stopwatch.StartNew();
        c.Send(VhostRequest.GetVringBase, RawClient.State(0, 0));
        var r = c.Receive();
        return (sw.ElapsedMilliseconds, r?.Body);
    }

    /// <summary>The hang the issue found: IOTLB misses sent on a back-end channel nobody reads block the worker for ever.</summary>
    [Fact]
    public void BackendChannelNobodyReadsBreaksTheRingAndTheStopAnswers()
    {
        using var rig = new VhostRig(options: new VhostUserBackendOptions { BackendChannelTimeout = TimeSpan.FromMilliseconds(300) });
        using var c = rig.Connect();
        using var mem = MemFd.Create("mem", MemBytes);
        ConfigureRing(c, mem, features: VirtioFeature.Bit(VirtioFeature.AccessPlatform), protocol: 1UL << VhostProtocolFeature.BackendReq);
        var (ours, theirs) = SafeFd.SocketPair();
        using var oursOwner = ours;
        using (var fill = new FdSocket(theirs))
        {
            // Fill the channel before handing it over, so the back-end's first send finds it full.
            var chunk = new byte[4096];
            while (fill.TrySend(chunk, default, 0, out _)) { }
            c.Send(VhostRequest.SetBackendReqFd, ReadOnlySpan<byte>.Empty, [theirs]);
        }
        using var kick = EventFd.Create();
        c.Send(VhostRequest.SetVringKick, RawClient.U64(0), [kick.Handle]);
        Assert.True(WaitForLog(rig, "back-end channel closed"), "the full channel should time out and be closed");
        Assert.Contains(rig.Log.Lines, l => l.Contains("did not read for 300 ms"));
        Assert.NotEqual(0UL, c.AskU64(VhostRequest.GetStatus) & (ulong)DeviceStatus.DeviceNeedsReset);
        var (ms, reply) = TimedGetVringBase(c);
        Assert.NotNull(reply);
        Assert.True(ms < 2000, $"GET_VRING_BASE took {ms} ms");
    }

    [Fact]
    public void StoppingARingEndsItsIotlbWaitAtOnce()
    {
        using var rig = new VhostRig(options: new VhostUserBackendOptions { IotlbMissTimeout = TimeSpan.FromSeconds(30) });
        using var c = rig.Connect();
        using var mem = MemFd.Create("mem", MemBytes);
        ConfigureRing(c, mem, features: VirtioFeature.Bit(VirtioFeature.AccessPlatform), protocol: 1UL << VhostProtocolFeature.BackendReq);
        var (ours, theirs) = SafeFd.SocketPair();
        using var channel = new RawClient(new System.Net.Sockets.Socket(new System.Net.Sockets.SafeSocketHandle(ours.DangerousGetHandle(), ownsHandle: false)));
        c.Send(VhostRequest.SetBackendReqFd, ReadOnlySpan<byte>.Empty, [theirs]);
        theirs.Dispose();
        using var kick = EventFd.Create();
        c.Send(VhostRequest.SetVringKick, RawClient.U64(0), [kick.Handle]);
        var miss = channel.Receive();
        Assert.NotNull(miss);
        Assert.Equal((uint)VhostBackendRequest.IotlbMsg, miss!.Value.Header.Request);
        Assert.Contains(BinaryPrimitives.ReadUInt64LittleEndian(miss.Value.Body), new[] { UserAddr, UserAddr + 0x1000, UserAddr + 0x2000 });
        Assert.Equal(IotlbMsgType.Miss, miss.Value.Body[25]);
        // The miss is never answered; the stop must not wait out the 30 s.
        var (ms, reply) = TimedGetVringBase(c);
        Assert.NotNull(reply);
        Assert.True(ms < 2000, $"GET_VRING_BASE took {ms} ms");
        ours.Dispose();
    }

    /// <summary>
    /// A call eventfd whose counter the front-end set to its maximum: a blocking write would never return. The back-end
    /// makes the fd non-blocking on arrival; a front-end that makes it blocking again (it shares the open file) only
    /// delays the stop until the stop drains the counter.
    /// </summary>
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public unsafe void CallFdAtItsMaximumNeverStallsTheRing(bool peerMakesItBlockingAgain)
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        using var mem = MemFd.Create("mem", MemBytes);
        using var map = MappedRegion.Map(mem, MemBytes, 0);
        var m = new Span<byte>((void*)map.Address, (int)MemBytes);
        WriteReadRequest(m);
        ConfigureRing(c, mem);
        using var call = EventFd.Create();
        ulong max = 0xFFFF_FFFF_FFFF_FFFE;
        Assert.Equal(8, (int)LibC.Write(call.Handle.Fd, &max, 8));
        c.Send(VhostRequest.SetVringCall, RawClient.U64(0), [call.Handle]);
        Assert.Equal(VirtioFeature.Bit(VirtioFeature.Version1), c.AskU64(VhostRequest.GetFeatures) & VirtioFeature.Bit(VirtioFeature.Version1));
        if (peerMakesItBlockingAgain)
        {
            int flags = LibC.Fcntl(call.Handle.Fd, LibC.F_GETFL, 0);
            Assert.NotEqual(0, flags & LibC.O_NONBLOCK);   // the back-end made it non-blocking
            Assert.Equal(0, LibC.Fcntl(call.Handle.Fd, LibC.F_SETFL, flags & ~LibC.O_NONBLOCK));
        }
        using var kick = EventFd.Create();
        c.Send(VhostRequest.SetVringKick, RawClient.U64(0), [kick.Handle]);
        kick.Signal();
        var end = Environment.TickCount64 + 5000;
        while (BinaryPrimitives.ReadUInt16LittleEndian(m[0x2002..]) != 1 && Environment.TickCount64 < end) Thread.Sleep(5);
        Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(m[0x2002..]));
        Assert.Equal(0, m[0x6000]);
        Assert.Equal(rig.DiskBefore.AsSpan(0, 512).ToArray(), m.Slice(0x5000, 512).ToArray());
        var (ms, reply) = TimedGetVringBase(c);
        Assert.NotNull(reply);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(reply.AsSpan(4)));
        Assert.True(ms < 2000, $"GET_VRING_BASE took {ms} ms");
    }

    /// <summary>
    /// Fuzz finding F3: the used ring placed so its flags word is the avail ring's idx. Turning notifications off writes
    /// avail idx = 1 (NO_NOTIFY), on writes 0: the ring reads empty while the device polls and non-empty when it re-checks,
    /// for ever and without a pop. The round must end anyway, so the stop (GET_VRING_BASE) still answers.
    /// </summary>
    [Fact]
    public void UsedFlagsOnAvailIdxCannotKeepTheWorkerInOneRound()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        using var mem = MemFd.Create("mem", MemBytes);
        ConfigureRing(c, mem);
        var addr = new byte[40];
        BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(8), UserAddr);             // desc
        BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(16), UserAddr + 0x1004);    // used: flags at 0x1004
        BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(24), UserAddr + 0x1002);    // avail: idx at 0x1004
        c.Send(VhostRequest.SetVringAddr, addr);
        using var kick = EventFd.Create();
        c.Send(VhostRequest.SetVringKick, RawClient.U64(0), [kick.Handle]);
        kick.Signal();
        Assert.True(WaitForLog(rig, "vring 0 started"), "the ring should start");
        Thread.Sleep(200);   // the worker is in its rounds now
        var (ms, reply) = TimedGetVringBase(c);
        Assert.NotNull(reply);
        Assert.True(ms < 2000, $"GET_VRING_BASE took {ms} ms");
    }
}
