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

    /// <summary>A back-end polling for <paramref name="poll"/>, ring 0 with one read request kicked and used.</summary>
    private sealed class Session : IDisposable
    {
        public readonly VhostRig Rig;
        public readonly RawClient Client;
        private readonly SafeFd _mem;
        private readonly MappedRegion _map;
        public readonly EventFd Kick;

        public Session(TimeSpan poll)
        {
            Rig = new VhostRig(options: new VhostUserBackendOptions { PollTime = poll });
            Client = Rig.Connect();
            _mem = MemFd.Create("mem", MemBytes);
            _map = MappedRegion.Map(_mem, MemBytes, 0);
            WriteReadRequest(M);
            ConfigureRing(Client, _mem);
            Kick = EventFd.Create();
            Client.Send(VhostRequest.SetVringKick, RawClient.U64(0), [Kick.Handle]);
            Kick.Signal();
            Assert.True(WaitUntil(() => UsedIdx(M) == 1, 5000), "the first request should be used");
            // The round that used it may still be running (its storage completion event can fire after the used
            // entry is visible, and that round would take a request added now): let the worker settle first.
            Thread.Sleep(150);
        }

        public Span<byte> M => new((void*)_map.Address, (int)MemBytes);

        public void Dispose()
        {
            Client.Dispose(); Rig.Dispose(); Kick.Dispose(); _map.Dispose(); _mem.Dispose();
        }
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
        using var t = new Session(polling ? TimeSpan.FromSeconds(1) : TimeSpan.Zero);
        var m = t.M;
        // Spinning: notifications are off (the driver need not kick), and what it adds is taken from the ring.
        if (polling) Assert.True(WaitUntil(() => UsedFlags(t.M) == UsedNoNotify, 200), "notifications should be off while spinning");
        RequeueWithoutKick(m, 2);
        bool served = WaitUntil(() => UsedIdx(t.M) == 2, 400);
        Assert.Equal(polling, served);
        if (!polling)
        {
            Assert.Equal(0, UsedFlags(m));   // sleeping with notifications on: the driver must kick
            t.Kick.Signal();
            Assert.True(WaitUntil(() => UsedIdx(t.M) == 2, 5000));
        }
        Assert.Equal(0, m[0x6000]);
        // Stopping the ring folds its counters in: the spin's find is counted as polled, not as a kick.
        t.Client.Send(VhostRequest.GetVringBase, RawClient.State(0, 0));
        Assert.NotNull(t.Client.Receive());
        Assert.True((polling ? 1 : 0) == Interlocked.Read(ref t.Rig.Server.Stats.Polled), $"polled {t.Rig.Server.Stats.Polled} kicks {t.Rig.Server.Stats.Kicks} usedidx {UsedIdx(m)} " + string.Join("|", t.Rig.Log.Lines));
        // The start's first round counts as a kick, then one kick per request that needed one.
        Assert.Equal(polling ? 2 : 3, Interlocked.Read(ref t.Rig.Server.Stats.Kicks));
    }

    [Fact]
    public void AfterTheWindowNotificationsAreOnAgainAndAKickIsNeeded()
    {
        using var t = new Session(TimeSpan.FromMilliseconds(50));
        Assert.True(WaitUntil(() => UsedFlags(t.M) == 0, 2000), "notifications should be re-enabled after the window");
        Thread.Sleep(100);
        RequeueWithoutKick(t.M, 2);
        Assert.False(WaitUntil(() => UsedIdx(t.M) == 2, 300), "the worker should sleep after the window");
        t.Kick.Signal();
        Assert.True(WaitUntil(() => UsedIdx(t.M) == 2, 5000));
    }

    [Fact]
    public void AStopIsNotHeldUpBySpinning()
    {
        using var t = new Session(TimeSpan.FromSeconds(1));
        var sw = Stopwatch.StartNew();
        t.Client.Send(VhostRequest.GetVringBase, RawClient.State(0, 0));
        var reply = t.Client.Receive();
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
