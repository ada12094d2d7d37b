using System.Buffers.Binary;
using System.Diagnostics;
using VirtioSharp.Interop;
using VirtioSharp.Tests.Support;
using VirtioSharp.VhostUser.Backend;
using VirtioSharp.VhostUser.Protocol;
using static VirtioSharp.Tests.Support.HostileSession;

namespace VirtioSharp.Tests;

/// <summary>
/// --poll-us (VhostUserBackendOptions.PollTime): after a round with work the ring worker spins with notifications off,
/// so a request made available without a kick is still served within the window; afterwards notifications are on
/// again and the worker sleeps; a stop is not held up by the spin.
/// </summary>
public unsafe class VhostPollTests
{
    private const ushort UsedNoNotify = 1;

    private static ushort UsedIdx(Span<byte> m) => BinaryPrimitives.ReadUInt16LittleEndian(m[0x2002..]);
    private static ushort UsedFlags(Span<byte> m) => BinaryPrimitives.ReadUInt16LittleEndian(m[0x2000..]);

    private static bool WaitUntil(Func<bool> cond, int ms)
    {
        var end = Environment.TickCount64 + ms;
        while (!cond()) { if (Environment.TickCount64 > end) return false; Thread.Sleep(1); }
        return true;
    }

    /// <summary>Ring 0 with one read request served after a kick; returns when it is used.</summary>
    private static (EventFd Kick, MappedRegion Map) FirstRequest(VhostRig rig, RawClient c, SafeFd mem)
    {
        var map = MappedRegion.Map(mem, MemBytes, 0);
        var m = new Span<byte>((void*)map.Address, (int)MemBytes);
        WriteReadRequest(m);
        ConfigureRing(c, mem);
        var kick = EventFd.Create();
        c.Send(VhostRequest.SetVringKick, RawClient.U64(0), [kick.Handle]);
        kick.Signal();
        Assert.True(WaitUntil(() => UsedIdx(new Span<byte>((void*)map.Address, (int)MemBytes)) == 1, 5000), "the first request should be used");
        return (kick, map);
    }

    /// <summary>The driver makes head 0 available again (it was used) without kicking.</summary>
    private static void RequeueWithoutKick(Span<byte> m, ushort availIdx)
    {
        m[0x6000] = 0xFF;
        BinaryPrimitives.WriteUInt16LittleEndian(m[(0x1004 + 2 * ((availIdx - 1) % 16))..], 0);
        BinaryPrimitives.WriteUInt16LittleEndian(m[0x1002..], availIdx);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void WhilePollingARequestWithoutAKickIsServed(bool polling)
    {
        using var rig = new VhostRig(options: new VhostUserBackendOptions { PollTime = polling ? TimeSpan.FromMilliseconds(800) : TimeSpan.Zero });
        using var c = rig.Connect();
        using var mem = MemFd.Create("mem", MemBytes);
        var (kick, map) = FirstRequest(rig, c, mem);
        using var _k = kick;
        using var _m = map;
        var m = new Span<byte>((void*)map.Address, (int)MemBytes);
        // Spinning: notifications are off (the driver need not kick), and what it adds is taken from the ring.
        if (polling) Assert.Equal(UsedNoNotify, UsedFlags(m));
        RequeueWithoutKick(m, 2);
        bool served = WaitUntil(() => UsedIdx(new Span<byte>((void*)map.Address, (int)MemBytes)) == 2, 400);
        Assert.Equal(polling, served);
        if (!polling)
        {
            Assert.Equal(0, UsedFlags(m));   // sleeping with notifications on: the driver must kick
            kick.Signal();
            Assert.True(WaitUntil(() => UsedIdx(new Span<byte>((void*)map.Address, (int)MemBytes)) == 2, 5000));
        }
        Assert.Equal(0, m[0x6000]);
    }

    [Fact]
    public void AfterTheWindowNotificationsAreOnAgainAndAKickIsNeeded()
    {
        using var rig = new VhostRig(options: new VhostUserBackendOptions { PollTime = TimeSpan.FromMilliseconds(50) });
        using var c = rig.Connect();
        using var mem = MemFd.Create("mem", MemBytes);
        var (kick, map) = FirstRequest(rig, c, mem);
        using var _k = kick;
        using var _m = map;
        var m = new Span<byte>((void*)map.Address, (int)MemBytes);
        Assert.True(WaitUntil(() => UsedFlags(new Span<byte>((void*)map.Address, (int)MemBytes)) == 0, 2000), "notifications should be re-enabled after the window");
        Thread.Sleep(100);
        RequeueWithoutKick(m, 2);
        Assert.False(WaitUntil(() => UsedIdx(new Span<byte>((void*)map.Address, (int)MemBytes)) == 2, 300), "the worker should sleep after the window");
        kick.Signal();
        Assert.True(WaitUntil(() => UsedIdx(new Span<byte>((void*)map.Address, (int)MemBytes)) == 2, 5000));
    }

    [Fact]
    public void AStopIsNotHeldUpBySpinning()
    {
        using var rig = new VhostRig(options: new VhostUserBackendOptions { PollTime = TimeSpan.FromSeconds(1) });
        using var c = rig.Connect();
        using var mem = MemFd.Create("mem", MemBytes);
        var (kick, map) = FirstRequest(rig, c, mem);
        using var _k = kick;
        using var _m = map;
        var sw = Stopwatch.StartNew();
        c.Send(VhostRequest.GetVringBase, RawClient.State(0, 0));
        var reply = c.Receive();
        Assert.NotNull(reply);
        Assert.Equal(1u, BinaryPrimitives.ReadUInt32LittleEndian(reply!.Value.Body.AsSpan(4)));
        Assert.True(sw.ElapsedMilliseconds < 500, $"GET_VRING_BASE took {sw.ElapsedMilliseconds} ms");
    }

    [Fact]
    public void APollTimeOutsideZeroToOneSecondIsRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new VhostUserBackendOptions { PollTime = TimeSpan.FromSeconds(2) });
        Assert.Throws<ArgumentOutOfRangeException>(() => new VhostUserBackendOptions { PollTime = TimeSpan.FromTicks(-1) });
        Assert.Equal(TimeSpan.FromSeconds(1), new VhostUserBackendOptions { PollTime = TimeSpan.FromSeconds(1) }.PollTime);
    }
}
