using System.Buffers.Binary;
using VirtioSharp.Devices.Net;
using VirtioSharp.Drivers;
using VirtioSharp.Drivers.Net;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.Spec.Net;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

using Mem = DeviceMemory<TranslatorRef, PortRef>;

/// <summary>
/// virtio-net on the simulated machine: frames byte-exact both ways in every DMA mode and transport, merged receive
/// buffers, the control queue, link status, multiqueue, and a hostile driver's malformed packets dropped and counted
/// with the queue still working.
/// </summary>
public class NetDeviceTests
{
    private sealed class Setup : IDisposable
    {
        public Setup(NetDeviceOptions? options = null, DmaMode mode = DmaMode.Direct, SimTransport transport = SimTransport.Pci,
            int ports = 1, ulong refuse = 0, uint rxBufferSize = 0, bool loopback = false)
        {
            Rig = new SimRig(mode);
            Ports = Enumerable.Range(0, ports).Select(_ => new MemoryNetPort(loopback)).ToArray();
            Device = new NetDevice<Mem>(Ports, (options ?? new NetDeviceOptions { QueueSize = 64 }) with { OfferAccessPlatform = Rig.AccessPlatform });
            Rig.Add(Device, transport);
            Driver = NetDriver.Probe(Rig.DriverTransport(), Rig.Environment(), refuseFeatures: refuse, rxBufferSize: rxBufferSize);
        }

        public SimRig Rig { get; }
        public MemoryNetPort[] Ports { get; }
        public MemoryNetPort Port => Ports[0];
        public NetDevice<Mem> Device { get; }
        public NetDriver Driver { get; }

        /// <summary>Sends a hand-built chain on transmit queue <paramref name="queue"/> and waits until the device used it.</summary>
        public void RawTx(byte[] readable, int queue = 1, int writable = 0)
        {
            var p = Rig.Platform;
            ulong gpa = p.Allocator.Allocate((ulong)Math.Max(1, readable.Length + writable));
            try
            {
                p.Cpu.Write(gpa, readable);
                var q = Driver.Device.Queue(queue);
                BufferSegment[] r = readable.Length > 0 ? [new(gpa, (uint)readable.Length)] : [];
                BufferSegment[] w = writable > 0 ? [new(gpa + (ulong)readable.Length, (uint)writable)] : [];
                Assert.Equal(QueueStatus.Ok, q.Add(r, w, gpa, out _));
                Driver.Device.Kick(queue);
                bool done = false;
                Assert.True(Driver.Device.WaitUntil(() => done || (done = q.GetUsed(out _, out _) == QueueStatus.Ok)));
                Assert.False(q.IsBroken);
            }
            finally { p.Allocator.Free(gpa, (ulong)Math.Max(1, readable.Length + writable)); }
        }

        public void Dispose()
        {
            Driver.Dispose();
            Rig.AssertNoLeaks();
            Rig.Dispose();
        }
    }

    public static TheoryData<SimTransport, DmaMode> AllModes()
    {
        var d = new TheoryData<SimTransport, DmaMode>();
        foreach (var t in new[] { SimTransport.Mmio, SimTransport.Pci })
            foreach (var m in Enum.GetValues<DmaMode>())
                d.Add(t, m);
        return d;
    }

    private static byte[] Frame(int size, int seed, byte[]? dst = null)
    {
        var b = new byte[size];
        new Random(seed).NextBytes(b);
        (dst ?? [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]).CopyTo(b, 0);
        return b;
    }

    [Theory, MemberData(nameof(AllModes))]
    public void FramesArriveByteExactBothWays(SimTransport transport, DmaMode mode)
    {
        using var s = new Setup(mode: mode, transport: transport, rxBufferSize: 512);
        var sizes = new[] { 14, 60, 511, 1514, 900 };
        var hdr = new VirtioNetHdr(NetHdrFlags.NeedsCsum, NetGsoType.None, 0, 0, 34, 16, 0);
        foreach (var (size, i) in sizes.Select((x, i) => (x, i)))
            Assert.True(s.Driver.Send(Frame(size, i), i == 1 ? hdr : default));
        Assert.True(s.Driver.WaitForTransmits());
        var sent = s.Port.Sent.ToArray();
        Assert.Equal(sizes.Length, sent.Length);
        for (int i = 0; i < sizes.Length; i++) Assert.Equal(Frame(sizes[i], i), sent[i].Frame);
        Assert.Equal(hdr, sent[1].Header);

        var rxHdr = new VirtioNetHdr(NetHdrFlags.DataValid, NetGsoType.None, 0, 0, 0, 0, 0);
        for (int i = 0; i < sizes.Length; i++) s.Port.Inject(Frame(sizes[i], 100 + i), i == 2 ? rxHdr : default);
        for (int i = 0; i < sizes.Length; i++)
        {
            var got = s.Driver.Receive();
            Assert.Equal(Frame(sizes[i], 100 + i), got.Frame);
            // 512-byte buffers: the 12-byte header and the frame spread over as many as it takes (MRG_RXBUF).
            Assert.Equal((12 + sizes[i] + 511) / 512, got.Buffers);
            if (i == 2) Assert.Equal(NetHdrFlags.DataValid, got.Header.Flags);
        }
        var st = s.Device.Stats;
        Assert.Equal(sizes.Length, st.TxPackets);
        Assert.Equal(sizes.Length, st.RxPackets);
        Assert.Equal(sizes.Sum(), st.RxBytes);
        Assert.True(st.RxMergedBuffers > 0);
        Assert.Equal(2 * sizes.Length, st.CopiedFrames);   // the simulated bus hands out no host memory
        Assert.Equal(0, s.Driver.RxErrors);
    }

    // Premapped receive buffers (the driver maps its pool once): refills map and unmap nothing, in every DMA mode that
    // can hold the pool, split and packed, and frames still arrive byte-exact (bounce and non-coherent ops sync them).
    [Theory]
    [InlineData(DmaMode.IommuStrict, false)]
    [InlineData(DmaMode.IommuStrict, true)]
    [InlineData(DmaMode.Bounce, false)]
    [InlineData(DmaMode.NonCoherent, true)]
    public void ReceiveRefillsUsePremappedBuffers(DmaMode mode, bool packed)
    {
        var o = new NetDeviceOptions { QueueSize = 64, OfferPacked = packed, OfferMergeableRxBuffers = true };
        using var s = new Setup(o, mode, rxBufferSize: 256);
        Assert.True(s.Driver.RxPremapped(0));
        var stats = s.Driver.Device.Dma.Stats;
        long maps = stats.Maps, unmaps = stats.Unmaps;
        for (int round = 0; round < 4; round++)
        {
            for (int i = 0; i < 30; i++) s.Port.Inject(Frame(60 + 40 * i, round * 100 + i));
            for (int i = 0; i < 30; i++) Assert.Equal(Frame(60 + 40 * i, round * 100 + i), s.Driver.Receive().Frame);
        }
        Assert.Equal(maps, stats.Maps);
        Assert.Equal(unmaps, stats.Unmaps);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void PackedRingAndLegacyHeaderCarryFrames(bool packed)
    {
        // Packed: merged buffers used together through the packed used descriptors. Without MRG_RXBUF on a legacy device
        // the header is 10 bytes (§5.1.6.1); here the modern device without MRG_RXBUF keeps 12.
        var o = new NetDeviceOptions { QueueSize = 64, OfferPacked = packed, OfferMergeableRxBuffers = packed };
        using var s = new Setup(o, rxBufferSize: 256);
        Assert.Equal(packed, s.Driver.Device.Has(VirtioFeature.RingPacked));
        Assert.Equal(12, s.Driver.HeaderLength);
        for (int round = 0; round < 3; round++)
        {
            for (int i = 0; i < 20; i++) s.Port.Inject(Frame(60 + 70 * i, round * 100 + i));
            for (int i = 0; i < 20; i++) Assert.Equal(Frame(60 + 70 * i, round * 100 + i), s.Driver.Receive().Frame);
        }
        Assert.Equal(60, s.Device.Stats.RxPackets);
    }

    [Fact]
    public void LegacyDeviceUsesTheTenByteHeader()
    {
        using var s = new Setup(new NetDeviceOptions { QueueSize = 64, LegacyOnly = true, OfferMergeableRxBuffers = false }, transport: SimTransport.PciLegacy);
        Assert.Equal(10, s.Driver.HeaderLength);
        Assert.True(s.Driver.Send(Frame(100, 1)));
        Assert.True(s.Driver.WaitForTransmits());
        Assert.Equal(Frame(100, 1), s.Port.Sent.Single().Frame);
        s.Port.Inject(Frame(200, 2));
        Assert.Equal(Frame(200, 2), s.Driver.Receive().Frame);
    }

    [Fact]
    public void LoopbackPortReturnsWhatWasSent()
    {
        using var s = new Setup(loopback: true);
        for (int i = 0; i < 10; i++) Assert.True(s.Driver.Send(Frame(64 + i * 100, i)));
        for (int i = 0; i < 10; i++) Assert.Equal(Frame(64 + i * 100, i), s.Driver.Receive().Frame);
    }

    [Fact]
    public void HostileTransmitsAreDroppedAndCountedWithoutBreakingTheQueue()
    {
        using var s = new Setup(new NetDeviceOptions { QueueSize = 64, Mtu = 1500 }, refuse: 1UL << NetFeature.HostTso6);
        var good = Frame(100, 1);
        static byte[] WithHeader(VirtioNetHdr h, byte[] frame)
        {
            var b = new byte[12 + frame.Length];
            h.Write(b.AsSpan(0, 12));
            frame.CopyTo(b, 12);
            return b;
        }
        s.RawTx(new byte[5]);                                                           // shorter than the header
        s.RawTx(WithHeader(default, new byte[10]));                                     // header, but no Ethernet header
        s.RawTx(WithHeader(default, new byte[1500 + 18 + 1]));                          // over MTU + link headers
        s.RawTx(WithHeader(new VirtioNetHdr(NetHdrFlags.NeedsCsum, NetGsoType.TcpV6, 54, 1448, 34, 16, 0), good));   // TSO6 refused
        s.RawTx(WithHeader(new VirtioNetHdr(NetHdrFlags.None, NetGsoType.TcpV4, 54, 1448, 0, 0, 0), good));          // GSO without NEEDS_CSUM
        s.RawTx(WithHeader(new VirtioNetHdr(NetHdrFlags.NeedsCsum, NetGsoType.None, 0, 0, 90, 16, 0), good));        // checksum beyond the frame
        s.RawTx(WithHeader(default, good), writable: 4);                                // writable part is ignored
        var st = s.Device.Stats;
        Assert.Equal(2, st.TxShort);
        Assert.Equal(1, st.TxOversize);
        Assert.Equal(1, st.TxBadGso);
        Assert.Equal(2, st.TxBadCsum);
        Assert.Equal(1, st.TxPackets);
        Assert.Equal(good, s.Port.Sent.Single().Frame);
        // A TSO frame that was negotiated passes, header intact; receive-only flags never reach the port.
        var tso = new VirtioNetHdr(NetHdrFlags.NeedsCsum | NetHdrFlags.DataValid, NetGsoType.TcpV4, 54, 1448, 34, 16, 7);
        s.RawTx(WithHeader(tso, Frame(3000, 5)));
        Assert.Equal(tso with { Flags = NetHdrFlags.NeedsCsum, NumBuffers = 0 }, s.Port.Sent.Last().Header);
        Assert.Equal(2, s.Device.Stats.TxPackets);
    }

    [Fact]
    public void ControlCommandsOfTheWrongSizeAreRefused()
    {
        using var s = new Setup();
        var d = s.Driver;
        Assert.Equal(NetCtrlAck.Err, d.Control(NetCtrlClass.Rx, NetCtrlRx.Promisc, [1, 0]));      // 2 bytes for a 1-byte command
        Assert.Equal(NetCtrlAck.Err, d.Control(NetCtrlClass.Rx, NetCtrlRx.Promisc, []));
        Assert.Equal(NetCtrlAck.Err, d.Control(NetCtrlClass.Rx, NetCtrlRx.Promisc, [2]));         // neither on nor off
        Assert.Equal(NetCtrlAck.Err, d.Control(NetCtrlClass.Mac, NetCtrlMac.AddrSet, [2, 0, 0, 0, 0]));
        Assert.Equal(NetCtrlAck.Err, d.Control(NetCtrlClass.Mac, NetCtrlMac.AddrSet, [1, 0, 0, 0, 0, 1]));   // multicast
        var table = new byte[8 + 6];
        BinaryPrimitives.WriteUInt32LittleEndian(table, 2);                                          // says 2, carries 1
        Assert.Equal(NetCtrlAck.Err, d.Control(NetCtrlClass.Mac, NetCtrlMac.TableSet, table));
        Assert.Equal(NetCtrlAck.Err, d.Control(NetCtrlClass.Mq, NetCtrlMq.VqPairsSet, [1, 0]));     // MQ not negotiated (1 pair)
        Assert.Equal(NetCtrlAck.Err, d.Control(NetCtrlClass.Vlan, 0, [0, 0]));
        Assert.True(s.Device.Promiscuous);
        // A chain without room for the ack cannot be answered: used, counted, and the queue goes on.
        s.RawTx([NetCtrlClass.Rx, NetCtrlRx.Promisc, 0], queue: 2);
        s.RawTx([NetCtrlClass.Rx], queue: 2, writable: 1);
        var st = s.Device.Stats;
        Assert.Equal(8, st.CtrlErr);
        Assert.Equal(2, st.CtrlMalformed);
        Assert.True(d.SetPromiscuous(false));
        Assert.False(s.Device.Promiscuous);
        Assert.Equal(1, s.Device.Stats.CtrlOk);
    }

    [Fact]
    public void ReceiveFilterFollowsTheControlQueue()
    {
        using var s = new Setup();
        var d = s.Driver;
        byte[] other = [0x02, 0, 0, 0, 0, 9], multi = [0x01, 0, 0x5e, 0, 0, 1], bcast = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff];
        Assert.True(d.SetPromiscuous(false));
        s.Port.Inject(Frame(60, 1, other));       // filtered
        s.Port.Inject(Frame(60, 2, multi));       // filtered: no ALLMULTI, not in the table
        s.Port.Inject(Frame(60, 3, bcast));
        s.Port.Inject(Frame(60, 4));              // our MAC
        Assert.Equal(Frame(60, 3, bcast), d.Receive().Frame);
        Assert.Equal(Frame(60, 4), d.Receive().Frame);
        Assert.Equal(2, s.Device.Stats.RxFiltered);
        Assert.True(d.SetMacTable([other], [multi]));
        Assert.Equal((1, 1), s.Device.MacTable);
        s.Port.Inject(Frame(60, 5, other));
        s.Port.Inject(Frame(60, 6, multi));
        Assert.Equal(Frame(60, 5, other), d.Receive().Frame);
        Assert.Equal(Frame(60, 6, multi), d.Receive().Frame);
        byte[] mac = [0x02, 1, 2, 3, 4, 5];
        Assert.True(d.SetMacAddress(mac));
        Assert.Equal(mac, s.Device.Mac.ToArray());
        s.Port.Inject(Frame(60, 7));              // the old address: filtered now
        s.Port.Inject(Frame(60, 8, mac));
        Assert.Equal(Frame(60, 8, mac), d.Receive().Frame);
        Assert.Equal(3, s.Device.Stats.RxFiltered);
    }

    [Fact]
    public void LinkDownIsAConfigChangeAndStopsTraffic()
    {
        using var s = new Setup();
        Assert.True(s.Driver.LinkUp);
        s.Device.SetLink(false);
        s.Driver.Device.PollOnce();
        Assert.True(s.Driver.Device.ConfigChanged);
        Assert.False(s.Driver.LinkUp);
        Assert.True(s.Driver.Send(Frame(60, 1)));
        Assert.True(s.Driver.WaitForTransmits());
        Assert.Equal(1, s.Device.Stats.TxLinkDown);
        Assert.Empty(s.Port.Sent);
        s.Port.Inject(Frame(60, 2));
        Assert.False(s.Driver.TryReceive(out _));
        s.Driver.Device.ConfigChanged = false;
        s.Device.SetLink(true);
        Assert.Equal(Frame(60, 2), s.Driver.Receive().Frame);   // the frame waited for the link
        Assert.True(s.Driver.Device.ConfigChanged);
        Assert.True(s.Driver.LinkUp);
    }

    [Fact]
    public void MultiqueueUsesOnlyThePairsTheDriverSet()
    {
        using var s = new Setup(new NetDeviceOptions { QueueSize = 64, QueuePairs = 2 }, ports: 2);
        var d = s.Driver;
        Assert.Equal(2, d.QueuePairs);
        s.Ports[1].Inject(Frame(60, 1));
        Assert.False(d.TryReceive(out _, pair: 1));               // pair 1 is not in use until VQ_PAIRS_SET
        Assert.False(d.SetQueuePairs(0));
        Assert.False(d.SetQueuePairs(3));
        Assert.True(d.SetQueuePairs(2));
        Assert.Equal(2, s.Device.ActivePairs);
        Assert.Equal(Frame(60, 1), d.Receive(pair: 1).Frame);
        Assert.True(d.Send(Frame(70, 2), pair: 1));
        Assert.True(d.WaitForTransmits(pair: 1));
        Assert.Equal(Frame(70, 2), s.Ports[1].Sent.Single().Frame);
        Assert.Empty(s.Ports[0].Sent);
    }
}

/// <summary>A device whose port cannot honour the negotiated offloads refuses the features instead of failing later.</summary>
public class NetOffloadRefusalTests
{
    private sealed class RefusingPort : INetPort
    {
        public ulong OffloadFeatures => MemoryNetPort.AllOffloads;
        public System.Runtime.InteropServices.SafeHandle? ReadableHandle => null;
        public void SetReceiveWakeup(Action? wake) { }
        public void SetOffloads(ulong features) => throw new IOException("TUNSETOFFLOAD 0x1f: Invalid argument");
        public bool Transmit(in VirtioNetHdr header, ReadOnlySpan<VirtioSharp.Devices.Block.IoVec> frame) => false;
        public int Receive(ReadOnlySpan<VirtioSharp.Devices.Block.IoVec> destination, out VirtioNetHdr header) { header = default; return 0; }
    }

    [Fact]
    public void APortThatRefusesTheOffloadsFailsFeatureNegotiation()
    {
        using var rig = new SimRig(DmaMode.Direct);
        rig.Add(new NetDevice<Mem>([new RefusingPort()], new NetDeviceOptions { QueueSize = 64 }), SimTransport.Pci);
        var e = Assert.Throws<VirtioProbeException>(() => NetDriver.Probe(rig.DriverTransport(), rig.Environment()));
        Assert.Contains("FEATURES_OK", e.Message);
        rig.AssertNoLeaks();
    }
}
