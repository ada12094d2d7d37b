using System.Buffers.Binary;
using VirtioSharp.Devices.Block;
using VirtioSharp.Interop;
using VirtioSharp.Spec;
using VirtioSharp.Tests.Support;
using VirtioSharp.VhostUser.Backend;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;
using static VirtioSharp.Tests.Support.HostileSession;

namespace VirtioSharp.Tests;

/// <summary>
/// A ring paused while its worker waits for an IOTLB miss (QEMU turns VHOST_F_LOG_ALL on when a migration starts, with
/// the rings running): the wait ends at once, but the chain being walked is not the driver's fault and must not break
/// the queue. It stays available and the restarted ring takes it once the front-end answers; a real guest under a vIOMMU
/// used to get DEVICE_NEEDS_RESET exactly when its migration began.
/// </summary>
public class VhostIotlbPauseTests
{
    [Fact]
    public void LogAllTurnedOnDuringAnIotlbMissLeavesTheChainForTheRestartedRing()
    {
        using var rig = new VhostRig(options: new VhostUserBackendOptions { IotlbMissTimeout = TimeSpan.FromSeconds(30) });
        using var c = rig.Connect();
        using var mem = MemFd.Create("mem", MemBytes);
        using var map = MappedRegion.Map(mem, MemBytes, 0);
        ConfigureRing(c, mem, features: VirtioFeature.Bit(VirtioFeature.AccessPlatform), protocol: 1UL << VhostProtocolFeature.BackendReq);
        using var channel = OpenBackendChannel(c, out var ours);
        using var oursOwner = ours;
        // IOVA = the front-end's user address; only the ring's three pages are mapped, so walking the request misses.
        MapIdentity(c, 0, 0x3000);
        WriteUserAddrReadRequest(Ram(map));
        using var kick = EventFd.Create();
        using var call = EventFd.Create(nonBlocking: true);
        StartRing(rig, c, kick, call);
        AssertMissIn(channel, 0x3000, 0x3000);

        // The migration starts: LOG_ALL on while the worker waits. The pause must end the wait, not the queue; then the
        // front-end answers and the restarted ring takes the same chain again and completes it.
        PauseAndMapAgain(rig, c, VirtioFeature.Bit(VirtioFeature.AccessPlatform), 0, MemBytes);
        kick.Signal();
        WaitForUsed(map);
        var ram = Ram(map);
        Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(ram[0x2002..]));   // used idx: exactly once
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(ram[0x2004..]));   // used[0].id = head 0
        Assert.Equal((byte)BlkStatus.Ok, ram[0x5000]);
        AssertNoReset(rig, c);
    }

    /// <summary>
    /// The same pause while the miss cannot even be sent: the front-end is not reading its back-end channel (QEMU's main
    /// loop waits for the reply to the very message that pauses the ring). The send is given up, the channel stays
    /// open (nothing of the message went out), and once the front-end reads again the restarted ring asks again.
    /// </summary>
    [Fact]
    public void APauseGivesUpAMissThatCannotBeSentAndKeepsTheChannel()
    {
        using var rig = new VhostRig(options: new VhostUserBackendOptions
        {
            IotlbMissTimeout = TimeSpan.FromSeconds(30), BackendChannelTimeout = TimeSpan.FromSeconds(30),
        });
        using var c = rig.Connect();
        using var mem = MemFd.Create("mem", MemBytes);
        using var map = MappedRegion.Map(mem, MemBytes, 0);
        ulong features = VirtioFeature.Bit(VirtioFeature.Version1) | VirtioFeature.Bit(VirtioFeature.AccessPlatform);
        ConfigureRing(c, mem, features: VirtioFeature.Bit(VirtioFeature.AccessPlatform), protocol: 1UL << VhostProtocolFeature.BackendReq);
        var (ours, theirs) = SafeFd.SocketPair();
        using var oursOwner = ours;
        int filled = 0;
        using (var fill = new FdSocket(theirs))
        {
            var chunk = new byte[4096];
            while (fill.TrySend(chunk, default, 0, out _)) filled += chunk.Length;
            c.Send(VhostRequest.SetBackendReqFd, ReadOnlySpan<byte>.Empty, [theirs]);
        }
        c.Send(VhostRequest.IotlbMsg, Iotlb(UserAddr, 0x3000, UserAddr, IotlbMsgType.PermReadWrite, IotlbMsgType.Update));
        unsafe { WriteUserAddrReadRequest(new Span<byte>((void*)map.Address, (int)MemBytes)); }
        using var kick = EventFd.Create();
        using var call = EventFd.Create(nonBlocking: true);
        c.Send(VhostRequest.SetVringCall, RawClient.U64(0), [call.Handle]);
        c.Send(VhostRequest.SetVringKick, RawClient.U64(0), [kick.Handle]);
        Thread.Sleep(200);   // the worker is now stuck sending its miss into the full channel

        c.Send(VhostRequest.SetFeatures, features | 1UL << VhostHeader.LogAllBit);
        Assert.True(WaitForLog(rig, "dirty logging on"), "LOG_ALL was not applied while a miss waited to be sent");
        Assert.Equal(0UL, c.AskU64(VhostRequest.GetStatus) & (ulong)DeviceStatus.DeviceNeedsReset);
        Assert.DoesNotContain(rig.Log.Lines, l => l.Contains("back-end channel closed", StringComparison.Ordinal));

        // The front-end reads again: first what filled the channel, then the restarted ring's miss, which it answers.
        using var raw = new System.Net.Sockets.Socket(new System.Net.Sockets.SafeSocketHandle(ours.DangerousGetHandle(), ownsHandle: false));
        raw.ReceiveTimeout = 5000;
        var sink = new byte[65536];
        for (int got = 0; got < filled;) got += raw.Receive(sink, 0, Math.Min(sink.Length, filled - got), System.Net.Sockets.SocketFlags.None);
        var channel = new RawClient(raw);
        var miss = channel.Receive();
        Assert.NotNull(miss);
        Assert.Equal(IotlbMsgType.Miss, miss!.Value.Body[25]);
        c.Send(VhostRequest.IotlbMsg, Iotlb(UserAddr, MemBytes, UserAddr, IotlbMsgType.PermReadWrite, IotlbMsgType.Update));
        WaitForUsed(map);
        unsafe
        {
            var ram = new Span<byte>((void*)map.Address, (int)MemBytes);
            Assert.Equal((byte)BlkStatus.Ok, ram[0x5000]);
        }
        Assert.Equal(0UL, c.AskU64(VhostRequest.GetStatus) & (ulong)DeviceStatus.DeviceNeedsReset);
    }

    /// <summary>
    /// The request completed and its used element is being written when the ring pauses (LOG_ALL on) with the used ring's
    /// translation still being fetched: the element must not be lost nor break the queue. It waits in the queue and the
    /// restarted ring publishes it before anything else; the driver sees it once, and the ring goes on after it.
    /// </summary>
    [Fact]
    public void APauseDuringASplitUsedWritePublishesTheEntryOnceWhenTheRingRestarts()
    {
        using var session = new PauseSession(VirtioFeature.Bit(VirtioFeature.AccessPlatform));
        var (rig, c, map, channel) = session;
        // Everything mapped while the ring starts (it checks its areas), as three entries: the used ring's page alone.
        MapIdentity(c, 0, 0x2000);
        MapIdentity(c, 0x2000, 0x1000);
        MapIdentity(c, 0x3000, MemBytes - 0x3000);
        var (kick, call) = (session.Kick, session.Call);
        StartRing(rig, c, kick, call);
        // The guest's IOMMU drops the used ring's page: the request is read and served, its used element then misses.
        Invalidate(c, 0x2000, 0x1000);
        unsafe { WriteUserAddrReadRequest(Ram(map)); }
        kick.Signal();
        AssertMissIn(channel, 0x2000, 0x1000);

        PauseAndMapAgain(rig, c, VirtioFeature.Bit(VirtioFeature.AccessPlatform), 0x2000, 0x1000);
        WaitForUsed(map);
        unsafe
        {
            var ram = Ram(map);
            Assert.Equal((byte)BlkStatus.Ok, ram[0x5000]);
            Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(ram[0x2004..]));      // used[0].id = head 0
            Assert.Equal(4097u, BinaryPrimitives.ReadUInt32LittleEndian(ram[0x2008..]));   // 4 KiB of data + the status byte
            // The ring goes on from there: the same head again is the second used element, and nothing is used twice.
            ram[0x5000] = 0xFF;
            BinaryPrimitives.WriteUInt16LittleEndian(ram[0x1006..], 0);   // avail ring[1] = head 0
            BinaryPrimitives.WriteUInt16LittleEndian(ram[0x1002..], 2);   // avail idx
        }
        kick.Signal();
        WaitForUsed(map, 2);
        Thread.Sleep(100);
        unsafe
        {
            var ram = Ram(map);
            Assert.Equal(2, BinaryPrimitives.ReadUInt16LittleEndian(ram[0x2002..]));   // exactly two, each once
            Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(ram[0x200C..]));  // used[1].id = head 0
            Assert.Equal((byte)BlkStatus.Ok, ram[0x5000]);
        }
        AssertNoReset(rig, c);
        Assert.Contains(rig.Log.Lines, l => l.Contains("1 used entries published", StringComparison.Ordinal));
    }

    /// <summary>
    /// The same for a packed ring: the used descriptor (written into the descriptor ring at the used offset, here slot 8)
    /// waits, the base the ring stops with keeps the published used offset, and the restarted ring writes it there.
    /// </summary>
    [Fact]
    public void APauseDuringAPackedUsedWritePublishesTheDescriptorOnceWhenTheRingRestarts()
    {
        using var session = new PauseSession(VirtioFeature.Bit(VirtioFeature.AccessPlatform) | VirtioFeature.Bit(VirtioFeature.RingPacked), packed: true);
        var (rig, c, map, channel) = session;
        // Avail offset 0, used offset 8 (both wrap counters 1): the chain is read from slots 0-2, used at slot 8.
        c.Send(VhostRequest.SetVringBase, RawClient.State(0, 0u | 1u << 15 | 8u << 16 | 1u << 31));
        MapIdentity(c, 0, 0x80);
        MapIdentity(c, 0x80, 0x10);   // slot 8 alone
        MapIdentity(c, 0x90, MemBytes - 0x90);
        var (kick, call) = (session.Kick, session.Call);
        StartRing(rig, c, kick, call);
        Invalidate(c, 0x80, 0x10);
        unsafe { WritePackedReadRequest(Ram(map), slot: 0, id: 0); }
        kick.Signal();
        AssertMissIn(channel, 0x80, 0x10);

        PauseAndMapAgain(rig, c, VirtioFeature.Bit(VirtioFeature.AccessPlatform) | VirtioFeature.Bit(VirtioFeature.RingPacked), 0x80, 0x10);
        WaitForPackedUsed(map, slot: 8);
        unsafe
        {
            var ram = Ram(map);
            Assert.Equal((byte)BlkStatus.Ok, ram[0x5000]);
            Assert.Equal(0, BinaryPrimitives.ReadUInt16LittleEndian(ram[(0x80 + 12)..]));       // id
            Assert.Equal(4097u, BinaryPrimitives.ReadUInt32LittleEndian(ram[(0x80 + 8)..]));    // len
            ram[0x5000] = 0xFF;
            WritePackedReadRequest(ram, slot: 3, id: 1);
        }
        kick.Signal();
        WaitForPackedUsed(map, slot: 11);   // the next used descriptor follows the 3 slots the first one covered
        Thread.Sleep(100);
        unsafe
        {
            var ram = Ram(map);
            Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(ram[(0xB0 + 12)..]));
            Assert.Equal((byte)BlkStatus.Ok, ram[0x5000]);
            Assert.Equal(0, BinaryPrimitives.ReadUInt16LittleEndian(ram[(14 * 16 + 14)..]));   // nothing used a third time
        }
        AssertNoReset(rig, c);
    }

    /// <summary>
    /// EVENT_IDX: the ring found empty writes avail_event (§2.7.10) and pauses while that write's translation is fetched.
    /// Not the driver's fault and nothing is lost: the queue stays whole and the restarted ring writes avail_event again.
    /// </summary>
    [Fact]
    public void APauseDuringTheAvailEventWriteLeavesItToTheRestartedRing()
    {
        ulong features = VirtioFeature.Bit(VirtioFeature.AccessPlatform) | VirtioFeature.Bit(VirtioFeature.EventIdx);
        using var session = new PauseSession(features);
        var (rig, c, map, channel) = session;
        const ulong availEvent = 0x2000 + 4 + 8 * 16;   // used ring of 16 entries, then avail_event
        MapIdentity(c, 0, availEvent);
        MapIdentity(c, availEvent, 2);
        MapIdentity(c, availEvent + 2, MemBytes - availEvent - 2);
        // A first request, served while everything is mapped: the pop that then finds the ring empty sets avail_event 1.
        unsafe { WriteUserAddrReadRequest(Ram(map)); }
        var (kick, call) = (session.Kick, session.Call);
        StartRing(rig, c, kick, call);
        WaitForU16(map, availEvent, 1, "the first request was not served");
        // avail_event's translation goes; the second request is served and the empty ring's avail_event store misses.
        Invalidate(c, availEvent, 2);
        unsafe
        {
            var ram = Ram(map);
            ram[0x5000] = 0xFF;
            BinaryPrimitives.WriteUInt16LittleEndian(ram[0x1006..], 0);   // avail ring[1] = head 0
            BinaryPrimitives.WriteUInt16LittleEndian(ram[0x1002..], 2);   // avail idx
        }
        kick.Signal();
        AssertMissIn(channel, availEvent, 2);

        PauseAndMapAgain(rig, c, features, availEvent, 2);
        WaitForU16(map, availEvent, 2, "the restarted ring never wrote avail_event");
        Assert.Equal(2, ReadU16(map, 0x2002));
        unsafe { Assert.Equal((byte)BlkStatus.Ok, Ram(map)[0x5000]); }
        AssertNoReset(rig, c);
    }

    private static void WaitForU16(MappedRegion map, ulong offset, ushort value, string what)
    {
        var end = Environment.TickCount64 + 10_000;
        while (ReadU16(map, offset) != value)
        {
            Assert.True(Environment.TickCount64 < end, what);
            Thread.Sleep(5);
        }
    }

    /// <summary>
    /// A ring starting (it checks its areas through the IOTLB) pauses while that check waits for a translation: the start
    /// is cut short, not failed, and the start after the pause serves the ring.
    /// </summary>
    [Fact]
    public void APauseDuringTheRingsStartCheckLeavesTheStartToTheNextOne()
    {
        using var session = new PauseSession(VirtioFeature.Bit(VirtioFeature.AccessPlatform));
        var (rig, c, map, channel) = session;
        MapIdentity(c, 0, 0x2000);
        MapIdentity(c, 0x3000, MemBytes - 0x3000);   // not the used ring's page
        var (kick, call) = (session.Kick, session.Call);
        c.Send(VhostRequest.SetVringCall, RawClient.U64(0), [call.Handle]);
        c.Send(VhostRequest.SetVringKick, RawClient.U64(0), [kick.Handle]);
        AssertMissIn(channel, 0x2000, 0x1000);

        PauseAndMapAgain(rig, c, VirtioFeature.Bit(VirtioFeature.AccessPlatform), 0x2000, 0x1000);
        Assert.True(WaitForLog(rig, "vring 0 started"), "the ring did not start after the pause");
        unsafe { WriteUserAddrReadRequest(Ram(map)); }
        kick.Signal();
        WaitForUsed(map);
        unsafe { Assert.Equal((byte)BlkStatus.Ok, Ram(map)[0x5000]); }
        AssertNoReset(rig, c);
    }

    /// <summary>A connected back-end with ring 0 configured (VERSION_1 + <c>features</c>), guest memory, the back-end channel and the ring's eventfds.</summary>
    private sealed class PauseSession : IDisposable
    {
        private readonly SafeFd _mem, _ours;
        public PauseSession(ulong features, bool packed = false)
        {
            Rig = new VhostRig(packed: packed, options: new VhostUserBackendOptions { IotlbMissTimeout = TimeSpan.FromSeconds(30) });
            C = Rig.Connect();
            _mem = MemFd.Create("mem", MemBytes);
            Map = MappedRegion.Map(_mem, MemBytes, 0);
            ConfigureRing(C, _mem, features: features, protocol: 1UL << VhostProtocolFeature.BackendReq);
            Channel = OpenBackendChannel(C, out _ours);
        }

        public VhostRig Rig { get; }
        public RawClient C { get; }
        public MappedRegion Map { get; }
        public RawClient Channel { get; }
        public EventFd Kick { get; } = EventFd.Create();
        public EventFd Call { get; } = EventFd.Create(nonBlocking: true);

        public void Deconstruct(out VhostRig rig, out RawClient c, out MappedRegion map, out RawClient channel) => (rig, c, map, channel) = (Rig, C, Map, Channel);

        public void Dispose()
        {
            Kick.Dispose(); Call.Dispose();
            Channel.Dispose(); _ours.Dispose();
            C.Dispose(); Map.Dispose(); _mem.Dispose();
            Rig.Dispose();
        }
    }

    private static RawClient OpenBackendChannel(RawClient c, out SafeFd ours)
    {
        var (mine, theirs) = SafeFd.SocketPair();
        ours = mine;
        var channel = new RawClient(new System.Net.Sockets.Socket(new System.Net.Sockets.SafeSocketHandle(mine.DangerousGetHandle(), ownsHandle: false)));
        c.Send(VhostRequest.SetBackendReqFd, ReadOnlySpan<byte>.Empty, [theirs]);
        theirs.Dispose();
        return channel;
    }

    /// <summary>IOTLB UPDATE: IOVA = the front-end's user address, for <paramref name="size"/> bytes at offset <paramref name="offset"/>.</summary>
    private static void MapIdentity(RawClient c, ulong offset, ulong size) =>
        c.Send(VhostRequest.IotlbMsg, Iotlb(UserAddr + offset, size, UserAddr + offset, IotlbMsgType.PermReadWrite, IotlbMsgType.Update));

    /// <summary>IOTLB INVALIDATE, then a reply from the same loop, so the back-end has applied it before the test goes on.</summary>
    private static void Invalidate(RawClient c, ulong offset, ulong size)
    {
        c.Send(VhostRequest.IotlbMsg, Iotlb(UserAddr + offset, size, 0, IotlbMsgType.PermNone, IotlbMsgType.Invalidate));
        c.AskU64(VhostRequest.GetStatus);
    }

    private static void StartRing(VhostRig rig, RawClient c, EventFd kick, EventFd call)
    {
        c.Send(VhostRequest.SetVringCall, RawClient.U64(0), [call.Handle]);
        c.Send(VhostRequest.SetVringKick, RawClient.U64(0), [kick.Handle]);
        Assert.True(WaitForLog(rig, "vring 0 started"), "the ring did not start");
    }

    private static void AssertMissIn(RawClient channel, ulong offset, ulong size)
    {
        var miss = channel.Receive();
        Assert.NotNull(miss);
        Assert.Equal(IotlbMsgType.Miss, miss!.Value.Body[25]);
        Assert.InRange(BinaryPrimitives.ReadUInt64LittleEndian(miss.Value.Body), UserAddr + offset, UserAddr + offset + size - 1);
    }

    /// <summary>LOG_ALL on (the ring pauses and restarts), then the front-end answers the miss.</summary>
    private static void PauseAndMapAgain(VhostRig rig, RawClient c, ulong features, ulong offset, ulong size)
    {
        c.Send(VhostRequest.SetFeatures, VirtioFeature.Bit(VirtioFeature.Version1) | features | 1UL << VhostHeader.LogAllBit);
        Assert.True(WaitForLog(rig, "dirty logging on"), "LOG_ALL was not applied");
        AssertNoReset(rig, c);
        MapIdentity(c, offset, size);
    }

    private static void AssertNoReset(VhostRig rig, RawClient c)
    {
        Assert.Equal(0UL, c.AskU64(VhostRequest.GetStatus) & (ulong)DeviceStatus.DeviceNeedsReset);
        Assert.DoesNotContain(rig.Log.Lines, l => l.Contains("needs a reset", StringComparison.OrdinalIgnoreCase));
    }

    private static unsafe Span<byte> Ram(MappedRegion map) => new((void*)map.Address, (int)MemBytes);

    private static unsafe ushort ReadU16(MappedRegion map, ulong offset) =>
        BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>((void*)(map.Address + (nint)offset), 2));

    /// <summary>
    /// A packed chain at slots <paramref name="slot"/>..+2 (wrap counter 1): the same 4 KiB virtio-blk IN request as
    /// <see cref="WriteUserAddrReadRequest"/> (header +0x3000, data +0x4000, status +0x5000), buffer id <paramref name="id"/>,
    /// the head's flags written last.
    /// </summary>
    private static void WritePackedReadRequest(Span<byte> ram, int slot, ushort id)
    {
        const ushort avail = 1 << 7, next = 1, write = 2;
        static void Desc(Span<byte> ram, int i, ulong addr, uint len, ushort id, ushort flags)
        {
            var d = ram.Slice(i * 16, 16);
            BinaryPrimitives.WriteUInt64LittleEndian(d, addr);
            BinaryPrimitives.WriteUInt32LittleEndian(d[8..], len);
            BinaryPrimitives.WriteUInt16LittleEndian(d[12..], id);
            BinaryPrimitives.WriteUInt16LittleEndian(d[14..], flags);
        }
        new BlkHeader(BlkRequestType.In, 0).Write(ram.Slice(0x3000, 16));
        ram[0x5000] = 0xFF;
        Desc(ram, slot + 1, UserAddr + 0x4000, 4096, id, avail | next | write);
        Desc(ram, slot + 2, UserAddr + 0x5000, 1, id, avail | write);
        Desc(ram, slot, UserAddr + 0x3000, 16, id, avail | next);
    }

    /// <summary>Waits (10 s at most) until the descriptor at <paramref name="slot"/> reads used under wrap counter 1 (AVAIL and USED set).</summary>
    private static void WaitForPackedUsed(MappedRegion map, int slot)
    {
        var end = Environment.TickCount64 + 10_000;
        while ((ReadU16(map, (ulong)slot * 16 + 14) & 0x8080) != 0x8080)
        {
            Assert.True(Environment.TickCount64 < end, $"no used descriptor at slot {slot} after the pause");
            Thread.Sleep(5);
        }
    }

    /// <summary>Waits (10 s at most) until the device published a used entry (used idx at +0x2002 no longer 0).</summary>
    private static unsafe void WaitForUsed(MappedRegion map, ushort atLeast = 1)
    {
        var end = Environment.TickCount64 + 10_000;
        while (BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>((void*)(map.Address + 0x2002), 2)) < atLeast)
        {
            Assert.True(Environment.TickCount64 < end, "the request was never completed after the pause");
            Thread.Sleep(5);
        }
    }
}
