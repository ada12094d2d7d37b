using System.Diagnostics.Metrics;
using VirtioSharp.Devices.Block;
using VirtioSharp.Devices.Net;
using VirtioSharp.Drivers.Net;
using VirtioSharp.Memory;
using VirtioSharp.Net.Switch;
using VirtioSharp.Spec.Net;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

using Mem = DeviceMemory<TranslatorRef, PortRef>;
using RMem = DeviceMemory<TranslatorRef, RamPort>;

/// <summary>
/// The built-in L2 switch: MAC learning, flooding of broadcast/multicast/unknown frames, no hairpin, ageing, a MAC table
/// that a flood of source addresses cannot grow, a stalled guest that costs the others nothing, oversize frames
/// dropped; then two simulated guests (NetDevice + NetDriver) talking through it in every DMA mode.
/// </summary>
public class NetSwitchTests
{
    private static readonly byte[] MacA = [0x52, 0x54, 0, 0, 0, 0xA], MacB = [0x52, 0x54, 0, 0, 0, 0xB], MacC = [0x52, 0x54, 0, 0, 0, 0xC];
    private static readonly byte[] Broadcast = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];

    /// <summary>A clock the test moves (1 tick = 1 ms).</summary>
    private sealed class ManualTime : TimeProvider
    {
        public long Now;
        public override long GetTimestamp() => Now;
        public override long TimestampFrequency => 1000;
    }

    private static byte[] Frame(byte[] dst, byte[] src, int length = 60, byte fill = 0x5A)
    {
        var f = new byte[length];
        Array.Fill(f, fill);
        dst.CopyTo(f, 0);
        src.CopyTo(f, 6);
        return f;
    }

    private static unsafe bool Send(NetSwitchPort port, byte[] frame)
    {
        fixed (byte* p = frame)
        {
            // Two vectors, split inside the source address: the switch must read the addresses across them.
            int cut = Math.Min(9, frame.Length);
            ReadOnlySpan<IoVec> v = [new IoVec((nint)p, (nuint)cut), new IoVec((nint)(p + cut), (nuint)(frame.Length - cut))];
            return port.Transmit(default, v);
        }
    }

    private static unsafe byte[]? Take(NetSwitchPort port, int room = 2048)
    {
        var buf = new byte[room];
        fixed (byte* p = buf)
        {
            int n = port.Receive([new IoVec((nint)p, (nuint)room)], out _);
            return n > 0 ? buf[..n] : null;
        }
    }

    private static NetSwitch Attached(int ports, NetSwitchOptions? o = null)
    {
        var sw = new NetSwitch(ports, o);
        foreach (var p in sw.Ports) p.SetReceiveWakeup(() => { });
        return sw;
    }

    [Fact]
    public void LearnsSourcesAndForwardsUnicastToThatPortOnly()
    {
        var sw = Attached(3);
        var (a, b, c) = (sw.Ports[0], sw.Ports[1], sw.Ports[2]);
        // B is unknown: flooded to B and C, not back to A.
        Assert.True(Send(a, Frame(MacB, MacA)));
        Assert.Equal((0, 1, 1), (a.Waiting, b.Waiting, c.Waiting));
        Assert.Equal(Frame(MacB, MacA), Take(b));
        Assert.NotNull(Take(c));
        Assert.Equal(-1, sw.PortOf(MacB));   // B has sent nothing yet
        Assert.Equal(1, a.Stats.Floods);
        // A was learned on port 0: B's reply goes to A only.
        Assert.Equal(0, sw.PortOf(MacA));
        Assert.True(Send(b, Frame(MacA, MacB, 100, 0x11)));
        Assert.Equal((1, 0, 0), (a.Waiting, b.Waiting, c.Waiting));
        Assert.Equal(Frame(MacA, MacB, 100, 0x11), Take(a));
        Assert.Equal(0, b.Stats.Floods);
        // Now both are known: A to B is not flooded either.
        Assert.True(Send(a, Frame(MacB, MacA)));
        Assert.Equal((0, 1, 0), (a.Waiting, b.Waiting, c.Waiting));
        Assert.Equal(1, a.Stats.Floods);
        // A moves to port 2 (a frame from it arrives there): relearned.
        Assert.True(Send(c, Frame(Broadcast, MacA)));
        Assert.Equal(2, sw.PortOf(MacA));
        Assert.Equal(new NetSwitchPortStats(2, 120, 0, 1, 100, 0, 1, 0), a.Stats);
    }

    [Fact]
    public void BroadcastAndMulticastFloodAndNothingGoesBackToItsIngressPort()
    {
        var sw = Attached(3);
        var (a, b, c) = (sw.Ports[0], sw.Ports[1], sw.Ports[2]);
        byte[] multicast = [0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb];
        Assert.True(Send(a, Frame(Broadcast, MacA)));
        Assert.True(Send(a, Frame(multicast, MacA)));
        Assert.Equal((0, 2, 2), (a.Waiting, b.Waiting, c.Waiting));
        Assert.Equal(2, a.Stats.Floods);
        // A frame for an address learned on the port it came in on is dropped (filtered), not hairpinned.
        Assert.True(Send(b, Frame(MacB, MacC)));          // C learned on port 1; flooded (B unknown)
        Assert.Equal((1, 2, 3), (a.Waiting, b.Waiting, c.Waiting));
        Assert.True(Send(b, Frame(MacC, MacB)));          // C is on port 1 itself
        Assert.Equal((1, 2, 3), (a.Waiting, b.Waiting, c.Waiting));
        Assert.Equal(1, b.Stats.Filtered);
        // A group source address is never learned.
        Assert.True(Send(c, Frame(MacA, multicast)));
        Assert.Equal(-1, sw.PortOf(multicast));
    }

    [Fact]
    public void LearnedAddressesAgeOutAndAreFloodedAgain()
    {
        var time = new ManualTime();
        var sw = Attached(3, new NetSwitchOptions { AgeingTime = TimeSpan.FromSeconds(10), Time = time });
        var (a, b, c) = (sw.Ports[0], sw.Ports[1], sw.Ports[2]);
        Send(b, Frame(Broadcast, MacB));
        Take(a); Take(c);
        time.Now = 9_000;
        Send(a, Frame(MacB, MacA));
        Assert.Equal((0, 1, 0), (a.Waiting, b.Waiting, c.Waiting));   // still known at 9 s
        Assert.NotNull(Take(b));
        Assert.Equal(2, sw.MacEntries);                               // B and A
        time.Now = 19_001;                                           // B silent for 19 s, A for 10.001 s
        Assert.Equal(-1, sw.PortOf(MacB));
        Assert.Equal(0, sw.MacEntries);
        Send(a, Frame(MacB, MacA));
        Assert.Equal((0, 1, 1), (a.Waiting, b.Waiting, c.Waiting));   // flooded
        Assert.Equal(1, a.Stats.Floods);
    }

    [Fact]
    public void AFloodOfSourceAddressesCannotGrowTheTableOrAllocate()
    {
        var sw = Attached(3, new NetSwitchOptions { MacTableSize = 64, QueueLength = 16 });
        var (a, b, c) = (sw.Ports[0], sw.Ports[1], sw.Ports[2]);
        var frame = Frame(MacA, MacC);
        var rnd = new Random(7);
        void Flood(int n)
        {
            for (int i = 0; i < n; i++)
            {
                rnd.NextBytes(frame.AsSpan(7, 5));   // a new unicast source address each frame
                Send(c, frame);
            }
        }
        Flood(1000);
        // Five windows of 20,000 frames: an allocation per frame (at least 24 bytes) shows in all of them; a one-off of
        // the runtime on this thread (tiering, seen as 6 KB once per process) can spoil one, so one must be clean.
        var windows = new long[5];
        for (int w = 0; w < windows.Length; w++)
        {
            long before = GC.GetAllocatedBytesForCurrentThread();
            Flood(20_000);
            windows[w] = GC.GetAllocatedBytesForCurrentThread() - before;
        }
        Assert.True(windows.Min() == 0 && windows.Sum() < 65536, "bytes allocated per window: " + string.Join(", ", windows));
        Assert.True(sw.MacEntries <= 64, $"{sw.MacEntries} entries in a 64-slot table");
        Assert.True(sw.MacEvictions > 90_000, $"evictions {sw.MacEvictions}");
        // Unknown destination A: every frame was flooded to A and B, whose queues hold 16 each; the rest were dropped.
        Assert.Equal((16, 16), (a.Waiting, b.Waiting));
        Assert.Equal(101_000 - 16, a.Stats.RxDropped);
        while (Take(a) is not null) { }
        while (Take(b) is not null) { }
        Assert.Equal(sw.Buffers, sw.FreeBuffers);
        // The table still learns and forwards.
        Send(a, Frame(Broadcast, MacA));
        Take(b); Take(c);
        Send(b, Frame(MacA, MacB));
        Assert.Equal((1, 0, 0), (a.Waiting, b.Waiting, c.Waiting));
    }

    [Fact]
    public void AGuestThatTakesNothingCostsTheOthersNothing()
    {
        var sw = Attached(3, new NetSwitchOptions { QueueLength = 8 });
        var (a, b, c) = (sw.Ports[0], sw.Ports[1], sw.Ports[2]);
        for (int i = 0; i < 100; i++)
        {
            Assert.True(Send(a, Frame(Broadcast, MacA, 60, (byte)i)));
            Assert.Equal(Frame(Broadcast, MacA, 60, (byte)i), Take(b));   // B keeps up
        }
        Assert.Equal(100, b.Stats.RxPackets);
        Assert.Equal(0, b.Stats.RxDropped);
        Assert.Equal(0, a.Stats.TxDropped);
        Assert.Equal(8, c.Waiting);                 // C posts no buffers: it holds its queue's worth, no more
        Assert.Equal(92, c.Stats.RxDropped);
        Assert.Equal(sw.Buffers - 8, sw.FreeBuffers);
        // C's guest goes away: what waited for it is dropped and its buffers come back; frames for it are dropped at once.
        c.SetReceiveWakeup(null);
        Assert.Equal(0, c.Waiting);
        Assert.Equal(sw.Buffers, sw.FreeBuffers);
        Assert.True(Send(a, Frame(Broadcast, MacA)));
        Assert.NotNull(Take(b));
        Assert.Equal((0, 101), (c.Waiting, c.Stats.RxDropped));
    }

    [Fact]
    public void FramesOverTheMtuOrShorterThanAHeaderAreDropped()
    {
        var sw = Attached(2, new NetSwitchOptions { Mtu = 1500 });
        var (a, b) = (sw.Ports[0], sw.Ports[1]);
        Assert.True(Send(a, Frame(Broadcast, MacA, 1518)));   // MTU + Ethernet + VLAN headers
        Assert.False(Send(a, Frame(Broadcast, MacA, 1519)));
        Assert.False(Send(a, Frame(Broadcast, MacA, 13)));
        Assert.True(Send(a, Frame(Broadcast, MacA, 14)));
        Assert.Equal((2L, 2L), (a.Stats.TxPackets, a.Stats.TxDropped));
        Assert.Equal(1518, Take(b)!.Length);
        // A receiver whose buffers cannot hold the frame loses it (counted), and the next one still arrives.
        Assert.True(Send(a, Frame(Broadcast, MacA, 1000)));
        Assert.Equal(14, Take(b)!.Length);
        Assert.Null(Take(b, room: 500));
        Assert.Equal(1, b.Stats.RxDropped);
        Assert.True(Send(a, Frame(Broadcast, MacA, 70)));
        Assert.Equal(70, Take(b)!.Length);
        Assert.Equal(sw.Buffers, sw.FreeBuffers);
    }

    [Theory, MemberData(nameof(NetDeviceTests.AllModes), MemberType = typeof(NetDeviceTests))]
    public void TwoSimulatedGuestsTalkThroughTheSwitch(SimTransport transport, DmaMode mode)
    {
        var sw = new NetSwitch(2);
        using var rigA = new SimRig(mode);
        using var rigB = new SimRig(mode);
        var devA = new NetDevice<Mem>([sw.Ports[0]], new NetDeviceOptions { QueueSize = 64, Mac = MacA, OfferAccessPlatform = rigA.AccessPlatform });
        var devB = new NetDevice<Mem>([sw.Ports[1]], new NetDeviceOptions { QueueSize = 64, Mac = MacB, OfferAccessPlatform = rigB.AccessPlatform });
        rigA.Add(devA, transport);
        rigB.Add(devB, transport);
        using (var drvA = NetDriver.Probe(rigA.DriverTransport(), rigA.Environment()))
        using (var drvB = NetDriver.Probe(rigB.DriverTransport(), rigB.Environment()))
        {
            var hello = Frame(Broadcast, MacA, 60, 1);
            Assert.True(drvA.Send(hello));
            Assert.True(drvA.WaitForTransmits());
            Assert.Equal(hello, drvB.Receive().Frame);
            var reply = Frame(MacA, MacB, 1514, 2);
            Assert.True(drvB.Send(reply));
            Assert.True(drvB.WaitForTransmits());
            Assert.Equal(reply, drvA.Receive().Frame);
            for (int i = 0; i < 20; i++)
            {
                var f = Frame(MacB, MacA, 200 + i * 50, (byte)(10 + i));
                Assert.True(drvA.Send(f));
                Assert.True(drvA.WaitForTransmits());
                Assert.Equal(f, drvB.Receive().Frame);
            }
            Assert.Equal(0, drvA.RxErrors + drvB.RxErrors);
        }
        Assert.Equal(new NetSwitchPortStats(21, 60 + Enumerable.Range(0, 20).Sum(i => 200 + i * 50), 0, 1, 1514, 0, 1, 0), sw.Ports[0].Stats);
        Assert.Equal((1L, 21L, 0L), (sw.Ports[1].Stats.TxPackets, sw.Ports[1].Stats.RxPackets, sw.Ports[1].Stats.Floods));
        Assert.Equal((21L, 1L), (devA.Stats.TxPackets, devA.Stats.RxPackets));
        Assert.Equal((1L, 21L), (devB.Stats.TxPackets, devB.Stats.RxPackets));
        rigA.AssertNoLeaks();
        rigB.AssertNoLeaks();
    }

    [Fact]
    public void TheMeterReportsEachPortsCountersAndTheMacTable()
    {
        var sw = Attached(2, new NetSwitchOptions { Name = "swm" });
        var (a, b) = (sw.Ports[0], sw.Ports[1]);
        using var metrics = NetSwitchMetrics.Create(sw);
        Assert.True(Send(a, Frame(Broadcast, MacA, 100)));
        Assert.NotNull(Take(b));
        Assert.True(Send(b, Frame(MacA, MacB, 200)));
        Assert.NotNull(Take(a));
        Assert.False(Send(a, Frame(Broadcast, MacA, 2000)));   // over the MTU
        var seen = new Dictionary<string, long>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (i, l) => { if (i.Meter == metrics.Meter) l.EnableMeasurementEvents(i); };
        listener.SetMeasurementEventCallback<long>((i, v, tags, _) =>
            seen[$"{i.Name}{{{string.Join(",", tags.ToArray().Select(kv => $"{kv.Key}={kv.Value}").Order())}}}"] = v);
        listener.Start();
        listener.RecordObservableInstruments();
        Assert.Equal(1, seen["net_switch.packets{direction=tx,port=0,switch=swm}"]);
        Assert.Equal(100, seen["net_switch.bytes{direction=tx,port=0,switch=swm}"]);
        Assert.Equal(100, seen["net_switch.bytes{direction=rx,port=1,switch=swm}"]);
        Assert.Equal(200, seen["net_switch.bytes{direction=rx,port=0,switch=swm}"]);
        Assert.Equal(1, seen["net_switch.dropped{direction=tx,port=0,switch=swm}"]);
        Assert.Equal(0, seen["net_switch.dropped{direction=rx,port=1,switch=swm}"]);
        Assert.Equal((1, 0), (seen["net_switch.floods{port=0,switch=swm}"], seen["net_switch.floods{port=1,switch=swm}"]));
        Assert.Equal(2, seen["net_switch.mac_entries{switch=swm}"]);
        Assert.Equal(0, seen["net_switch.mac_evictions{switch=swm}"]);
    }

    // Over the real vhost-user back-end: one guest's front-end goes away and comes back on its socket (what QEMU does
    // with reconnect=1). Frames for it meanwhile are dropped and counted, none of them reaches the new connection, and
    // the other guest's connection never notices.
    [Fact]
    public void AGuestReconnectingGetsNoStaleFramesAndTheOtherGuestCarriesOn()
    {
        var sw = new NetSwitch(2);
        using var rigA = new VhostDeviceRig(new NetDevice<RMem>([sw.Ports[0]], new NetDeviceOptions { ControlQueue = false, Mac = MacA }));
        using var rigB = new VhostDeviceRig(new NetDevice<RMem>([sw.Ports[1]], new NetDeviceOptions { ControlQueue = false, Mac = MacB }));
        using var feA = rigA.Connect();
        using var drvA = NetDriver.Probe(feA, feA.Environment(pollBudget: 2000));
        void AToB(byte[] f)
        {
            Assert.True(drvA.Send(f));
            Assert.True(drvA.WaitForTransmits());
        }
        using (var feB = rigB.Connect())
        using (var drvB = NetDriver.Probe(feB, feB.Environment(pollBudget: 2000)))
        {
            var hello = Frame(Broadcast, MacA, 60, 1);
            AToB(hello);
            Assert.Equal(hello, drvB.Receive().Frame);
            Assert.True(drvB.Send(Frame(MacA, MacB, 80, 2)));
            Assert.Equal(Frame(MacA, MacB, 80, 2), drvA.Receive().Frame);
        }
        Assert.True(SpinWait.SpinUntil(() => rigB.Log.Lines.Any(l => l.Contains("waiting for the next front-end")), TimeSpan.FromSeconds(30)),
            "B's back-end never reset its device");
        long dropped = sw.Ports[1].Stats.RxDropped;
        for (int i = 0; i < 5; i++) AToB(Frame(MacB, MacA, 100, (byte)(0x40 + i)));
        Assert.Equal(dropped + 5, sw.Ports[1].Stats.RxDropped);
        Assert.Equal(0, sw.Ports[1].Waiting);
        using (var feB = rigB.Connect())
        using (var drvB = NetDriver.Probe(feB, feB.Environment(pollBudget: 2000)))
        {
            var fresh = Frame(MacB, MacA, 120, 0x77);
            AToB(fresh);
            Assert.Equal(fresh, drvB.Receive().Frame);
            Assert.Equal(0, drvB.Pending());
            Assert.True(drvB.Send(Frame(MacA, MacB, 90, 3)));
            Assert.Equal(Frame(MacA, MacB, 90, 3), drvA.Receive().Frame);
        }
        Assert.Empty(rigA.ResetLines);
        Assert.Equal(1, rigA.Server.Stats.Connections);
        Assert.Equal(2, rigB.Server.Stats.Connections);
    }
}
