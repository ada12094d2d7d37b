using CsCheck;
using VirtioSharp.Devices;
using VirtioSharp.Dma;
using VirtioSharp.Drivers;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

/// <summary>
/// Packed rings (and IN_ORDER / NOTIFICATION_DATA on both layouts) through the one queue API: wrap-around many times at
/// queue sizes 1, 2, 3, 256 and 32768, notification suppression across wraps and against any event area, vhost-user ring
/// base, the simulated mmio / pci transports negotiating RING_PACKED, and notification data that cannot be right.
/// </summary>
public class PackedRingTests
{
    public static TheoryData<ushort, bool, bool, bool> WrapCases()
    {
        var d = new TheoryData<ushort, bool, bool, bool>();
        foreach (ushort size in new ushort[] { 1, 2, 3, 256, 32768 })
            foreach (bool packed in new[] { false, true })
                foreach (bool inOrder in new[] { false, true })
                {
                    if (!packed && !SplitRingLayout.IsValidSize(size)) continue;
                    d.Add(size, packed, inOrder, size % 2 == 0);   // event idx on for some sizes, off for others
                }
        return d;
    }

    [Theory]
    [MemberData(nameof(WrapCases))]
    public void WrapsAroundManyTimes(ushort size, bool packed, bool inOrder, bool eventIdx)
    {
        using var rig = DmaRig.Create(DmaMode.Direct, ramSize: 32UL << 20);
        var options = new QueueOptions { Packed = packed, InOrder = inOrder, EventIdx = eventIdx, IndirectDesc = size > 1, MaxIndirect = 4 };
        using var q = new QueuePair(rig, size, options);
        var rng = new Random(size * 7 + (packed ? 1 : 0) + (inOrder ? 2 : 0));
        ulong inBuf = rig.AllocBuffer(64, 0, new byte[64]), outBuf = rig.AllocBuffer(64, 0, new byte[64]);
        var popped = new List<(DescriptorChain Chain, object Token)>();
        var tokens = new Queue<object>();      // added, not yet popped
        var inOrderTokens = new Queue<object>();
        var expectLen = new Dictionary<object, uint>();
        long slotsUsed = 0, target = 5L * size + 16;
        bool deviceWaiting = false, driverWaiting = false;
        int rounds = 0;
        while (slotsUsed < target)
        {
            Assert.True(++rounds < 1_000_000, "no progress");
            int want = rng.Next(1, Math.Min((int)size, 64) + 1), added = 0;
            for (int i = 0; i < want; i++)
            {
                int segs = rng.Next(1, Math.Min(3, (int)size) + 1);
                var r = segs > 1 ? new[] { new BufferSegment(inBuf, 16) } : [];
                var w = Enumerable.Repeat(new BufferSegment(outBuf, 8), segs - r.Length).ToArray();
                var token = new object();
                var st = q.Driver.Add(r, w, token, out _);
                if (st == QueueStatus.NoSpace) break;
                Assert.Equal(QueueStatus.Ok, st);
                tokens.Enqueue(token);
                inOrderTokens.Enqueue(token);
                added++;
            }
            bool kick = q.Driver.KickPrepare();
            if (deviceWaiting && added > 0) Assert.True(kick, "lost wakeup across a wrap");
            q.Device.DisableNotifications();
            while (q.Device.Pop(out var c) == QueueStatus.Ok) popped.Add((c!, tokens.Dequeue()));
            Assert.False(q.Device.IsBroken, q.Device.ErrorDetail);
            int k = added == 0 ? popped.Count : rng.Next(0, popped.Count + 1);
            var done = inOrder ? popped.Take(k).ToList() : popped.OrderBy(_ => rng.Next()).Take(k).ToList();
            if (inOrder && done.Count > 1 && rng.Next(2) == 0)
            {
                // Earlier buffers of a batch count as written in full (§2.8.20); the last as its element says.
                foreach (var (c, t) in done) expectLen[t] = (uint)c.WritableBytes;
                expectLen[done[^1].Token] = 0;
                foreach (var (c, _) in done) slotsUsed += c.RingDescriptors;
                Assert.Equal(QueueStatus.Ok, q.Device.AddUsedBatch(done.Select(d => d.Chain).ToArray(), 0));
            }
            else
                foreach (var (c, t) in done)
                {
                    expectLen[t] = (uint)Math.Min(c.WritableBytes, 5);
                    slotsUsed += c.RingDescriptors;
                    Assert.Equal(QueueStatus.Ok, q.Device.AddUsed(c, expectLen[t]));
                }
            foreach (var d in done) popped.Remove(d);
            // The device's used position and wrap counter follow the slots used (§2.8.1); split: one entry a chain.
            Assert.Equal(packed ? (ushort)(slotsUsed % size) : (ushort)slotsUsed, q.Device.NextUsed);
            Assert.Equal(!packed || slotsUsed / size % 2 == 0, q.Device.UsedWrapCounter);
            bool irq = q.Device.NeedsInterrupt();
            if (driverWaiting && done.Count > 0) Assert.True(irq, "lost interrupt across a wrap");
            deviceWaiting = !q.Device.EnableNotifications();
            q.Driver.DisableCallbacks();
            while (q.Driver.GetUsed(out var token, out uint len) == QueueStatus.Ok)
            {
                if (inOrder) Assert.Same(inOrderTokens.Dequeue(), token);
                Assert.True(expectLen.Remove(token!, out uint want2), "a token came back that was not used, or twice");
                Assert.Equal(want2, len);
            }
            Assert.Empty(expectLen);
            Assert.False(q.Driver.IsBroken, q.Driver.ErrorDetail);
            driverWaiting = q.Driver.EnableCallbacks();
        }
        Assert.Equal(popped.Count, q.Driver.Outstanding);
        Assert.True(slotsUsed >= 5L * size);
    }

    [Fact]
    public void EventIdxSuppressesKicksUntilTheAskedSlot()
    {
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var q = new QueuePair(rig, 5, new QueueOptions { Packed = true, EventIdx = true });
        var seg = new[] { new BufferSegment(rig.AllocBuffer(8, 0, new byte[8]), 8) };
        Assert.False(q.Device.EnableNotifications());     // asks for a kick when slot 0 becomes available
        Assert.Equal(QueueStatus.Ok, q.Driver.Add(seg, [], 1, out _));
        Assert.True(q.Driver.KickPrepare());
        Assert.Equal(QueueStatus.Ok, q.Driver.Add(seg, [], 2, out _));
        Assert.False(q.Driver.KickPrepare());             // the device still wants slot 0 only
        q.Device.DisableNotifications();
        Assert.Equal(QueueStatus.Ok, q.Driver.Add(seg, [], 3, out _));
        Assert.False(q.Driver.KickPrepare());
        // Interrupts: the driver asks for one at its next used slot.
        Assert.True(q.Driver.EnableCallbacks());
        Assert.Equal(QueueStatus.Ok, q.Device.Pop(out var c1));
        Assert.Equal(QueueStatus.Ok, q.Device.AddUsed(c1!, 0));
        Assert.True(q.Device.NeedsInterrupt());
        Assert.Equal(QueueStatus.Ok, q.Device.Pop(out var c2));
        Assert.Equal(QueueStatus.Ok, q.Device.AddUsed(c2!, 0));
        Assert.False(q.Device.NeedsInterrupt());          // driver has not consumed slot 0 yet: no new event asked
        q.Driver.DisableCallbacks();
        Assert.Equal(QueueStatus.Ok, q.Device.Pop(out var c3));
        Assert.Equal(QueueStatus.Ok, q.Device.AddUsed(c3!, 0));
        Assert.False(q.Device.NeedsInterrupt());
        for (int i = 0; i < 3; i++) Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out _, out _));
    }

    [Fact]
    public void PackedBaseRoundTripsAcrossAWrap()
    {
        // vhost-user GET/SET_VRING_BASE: a new device queue resumes where the old one stopped (QEMU 7.2 encoding).
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var q = new QueuePair(rig, 3, new QueueOptions { Packed = true });
        var seg = new[] { new BufferSegment(rig.AllocBuffer(8, 0, new byte[8]), 8) };
        for (int i = 0; i < 4; i++)
        {
            Assert.Equal(QueueStatus.Ok, q.Driver.Add(seg, [], i, out _));
            Assert.Equal(QueueStatus.Ok, q.Device.Pop(out var c));
            Assert.Equal(QueueStatus.Ok, q.Device.AddUsed(c!, 0));
            Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out _, out _));
        }
        uint b = q.Device.PackedBase;
        Assert.Equal(1u, b & 0x7FFF);                 // next avail offset 1 ...
        Assert.Equal(0u, (b >> 15) & 1);             // ... in the second lap: wrap counter 0
        Assert.Equal(1u, (b >> 16) & 0x7FFF);
        Assert.Equal(0u, b >> 31);
        var fresh = rig.CreateDevice(q.Driver, q.Options);
        fresh.SetPackedBase(b);
        Assert.Equal(b, fresh.PackedBase);
        for (int i = 0; i < 5; i++)
        {
            Assert.Equal(QueueStatus.Ok, q.Driver.Add(seg, [], i, out _));
            Assert.Equal(QueueStatus.Ok, fresh.Pop(out var c));
            Assert.Equal(QueueStatus.Ok, fresh.AddUsed(c!, 0));
            Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out var t, out _));
            Assert.Equal(i, t);
        }
        Assert.Throws<ArgumentOutOfRangeException>(() => fresh.SetPackedBase(3));   // offset 3 is past a 3-entry ring
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void NotificationDataCarriesNextOffsetAndWrap(bool packed)
    {
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var q = new QueuePair(rig, 4, new QueueOptions { Packed = packed, NotificationData = true });
        var seg = new[] { new BufferSegment(rig.AllocBuffer(8, 0, new byte[8]), 8) };
        Assert.Equal(0x8000 | 0, packed ? q.Driver.NotifyOffWrap : 0x8000);
        for (int i = 0; i < 6; i++)
        {
            Assert.Equal(QueueStatus.Ok, q.Driver.Add(seg, [], i, out _));
            ushort ow = q.Driver.NotifyOffWrap;
            // Split: the avail idx (§2.9); packed: next offset, wrap counter in bit 15 (flips after 4 descriptors).
            Assert.Equal(packed ? (ushort)(((i + 1) % 4) | ((i + 1) / 4 % 2 == 0 ? 0x8000 : 0)) : (ushort)(i + 1), ow);
            Assert.Equal((uint)ow << 16 | 3u, q.Driver.NotificationData(3));
            Assert.True(q.Device.AcceptNotificationData(ow));
            Assert.Equal(QueueStatus.Ok, q.Device.Pop(out var c));
            Assert.Equal(QueueStatus.Ok, q.Device.AddUsed(c!, 0));
            Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out _, out _));
        }
        Assert.False(q.Device.AcceptNotificationData(packed ? (ushort)9 : (ushort)(q.Device.NextAvail + 5)));
    }

    [Theory]
    [InlineData((ushort)1)]
    [InlineData((ushort)4)]
    [InlineData((ushort)7)]
    public void KickAfterTwoLapsAddedBetweenKicksReachesAWaitingDevice(ushort size)
    {
        // The device drains a lap by polling, then waits at its next slot; the driver, which never kicked, takes the used
        // buffers back and fills another lap. The slot the device waits for was made available: it must be kicked.
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var q = new QueuePair(rig, size, new QueueOptions { Packed = true, EventIdx = true });
        var seg = new[] { new BufferSegment(rig.AllocBuffer(8, 0, new byte[8]), 8) };
        for (int lap = 0; lap < 2; lap++)
        {
            for (int i = 0; i < size; i++) Assert.Equal(QueueStatus.Ok, q.Driver.Add(seg, [], i, out _));
            if (lap == 1) break;
            q.Device.DisableNotifications();
            for (int i = 0; i < size; i++)
            {
                Assert.Equal(QueueStatus.Ok, q.Device.Pop(out var c));
                Assert.Equal(QueueStatus.Ok, q.Device.AddUsed(c!, 0));
            }
            Assert.False(q.Device.EnableNotifications());   // nothing pending: the device sleeps
            for (int i = 0; i < size; i++) Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out _, out _));
        }
        Assert.True(q.Device.HasAvailable());
        Assert.True(q.Driver.KickPrepare(), "lost wakeup: two laps were made available since the last kick");
        Assert.False(q.Driver.KickPrepare());
    }

    /// <summary>
    /// Packed event suppression against any event area (§2.8.10, §2.8.14), on both sides: a random word (DISABLE,
    /// ENABLE, reserved flags, DESC at a real or impossible offset and either wrap) is written just before each
    /// decision. DISABLE silences; anything not a valid DESC notifies; a valid DESC notifies exactly when its descriptor
    /// (unwrapped relative to the current lap) was made available / used since the last decision. Kicks are sometimes
    /// skipped for several rounds, so windows of more than a lap occur.
    /// </summary>
    [Fact]
    public void EventSuppressionMatchesAnOracleForAnyEventArea()
    {
        long kicks = 0, silent = 0, irqs = 0, quiet = 0;
        Gen.Select(Gen.OneOf<ushort>(1, 2, 3, 5, 8), Gen.Bool, Gen.Bool, Gen.Int, (size, e, o, seed) => (size, e, o, seed)).Sample(c =>
        {
            using var rig = DmaRig.Create(DmaMode.Direct);
            using var q = new QueuePair(rig, c.size, new QueueOptions { Packed = true, EventIdx = c.e, InOrder = c.o });
            var rng = new Random(c.seed);
            ulong buf = rig.AllocBuffer(64, 0, new byte[64]);
            long avail = 0, kickBase = 0, used = 0, irqBase = 0;   // absolute ring positions
            var inDevice = new List<DescriptorChain>();

            // Writes a random event word, then checks the side's decision against the oracle.
            bool Decide(Action<ushort, ushort> writeEvent, Func<bool> decide, long pos, long since, bool device)
            {
                var (ow, fl) = RandomEvent(rng, c.size, pos);
                writeEvent(ow, fl);
                // The device also interrupts once a lap or more was used since its last decision.
                bool expect = Notifies(ow, fl, c.e, c.size, pos, pos - since, lapWindowNotifies: device);
                Assert.True(expect == decide(), $"{(device ? "interrupt" : "kick")}: event 0x{fl:x}/0x{ow:x4} at {pos} since {since}");
                return expect;
            }

            for (int round = 0; round < 30; round++)
            {
                for (int i = rng.Next(0, c.size + 1); i > 0; i--)
                {
                    int free = q.Driver.FreeDescriptors;
                    var w = Enumerable.Repeat(new BufferSegment(buf, 8), rng.Next(1, Math.Min((int)c.size, 3) + 1)).ToArray();
                    if (q.Driver.Add([], w, new object(), out _) == QueueStatus.NoSpace) break;
                    avail += free - q.Driver.FreeDescriptors;
                }
                if (rng.Next(3) != 0)
                {
                    Interlocked.Increment(ref Decide(q.WriteDeviceEvent, q.Driver.KickPrepare, avail, kickBase, device: false) ? ref kicks : ref silent);
                    kickBase = avail;
                }
                while (q.Device.Pop(out var ch) == QueueStatus.Ok) inDevice.Add(ch!);
                var done = c.o ? inDevice.Take(rng.Next(0, inDevice.Count + 1)).ToList() : inDevice.Where(_ => rng.Next(2) == 0).ToList();
                if (c.o && done.Count > 1) Assert.Equal(QueueStatus.Ok, q.Device.AddUsedBatch(done.ToArray(), 0));
                else foreach (var ch in done) Assert.Equal(QueueStatus.Ok, q.Device.AddUsed(ch, 0));
                foreach (var ch in done) { used += ch.RingDescriptors; inDevice.Remove(ch); }
                if (rng.Next(3) != 0)
                {
                    Interlocked.Increment(ref Decide(q.WriteDriverEvent, q.Device.NeedsInterrupt, used, irqBase, device: true) ? ref irqs : ref quiet);
                    irqBase = used;
                }
                while (q.Driver.GetUsed(out _, out _) == QueueStatus.Ok) { }
                Assert.False(q.Driver.IsBroken || q.Device.IsBroken);
            }
        }, iter: 300);
        Assert.True(kicks > 100 && silent > 100 && irqs > 100 && quiet > 100, $"kicks {kicks}/{silent}, interrupts {irqs}/{quiet}");
    }

    // Absolute position p sits at offset p % size in lap p / size; lap 0 has wrap counter 1 (§2.8.1).
    private static ushort OffWrapAt(long p, int size) => PackedRing.OffWrap((int)(p % size), p / size % 2 == 0);

    private static (ushort OffWrap, ushort Flags) RandomEvent(Random rng, int size, long pos) => rng.Next(6) switch
    {
        0 => ((ushort)rng.Next(65536), PackedRing.EventDisable),
        1 => ((ushort)rng.Next(65536), PackedRing.EventEnable),
        2 => ((ushort)rng.Next(65536), (ushort)rng.Next(3, 65536)),                       // reserved flags
        3 => ((ushort)rng.Next(65536), PackedRing.EventDesc),                             // often past the ring
        _ => (OffWrapAt(Math.Max(0, pos - rng.Next(0, 2 * size + 1) + rng.Next(0, 2)), size), PackedRing.EventDesc),
    };

    private static bool Notifies(ushort offWrap, ushort flags, bool eventIdx, int size, long pos, long window, bool lapWindowNotifies)
    {
        if (window == 0 || flags == PackedRing.EventDisable) return false;
        int off = offWrap & 0x7FFF;
        if (flags != PackedRing.EventDesc || !eventIdx || off >= size || lapWindowNotifies && window >= size) return true;
        long lapStart = pos - pos % size;
        bool sameLap = (offWrap >> 15 != 0) == (pos / size % 2 == 0);
        long ev = sameLap ? lapStart + off : lapStart - size + off;
        return ev >= pos - window && ev < pos;
    }

    [Theory]
    [InlineData("mmio", false)]
    [InlineData("mmio", true)]
    [InlineData("pci", false)]
    [InlineData("pci", true)]
    public void NotificationDataOutOfRangeIsAPlainNotification(string transport, bool packed)
    {
        using var m = new SimMachine(new SimPlatformOptions());
        ulong extra = VirtioFeature.Bit(VirtioFeature.NotificationData) | (packed ? VirtioFeature.Bit(VirtioFeature.RingPacked) : 0);
        var dev = new WithFeatures<DeviceMemory<TranslatorRef, PortRef>>(new EntropyDevice<DeviceMemory<TranslatorRef, PortRef>>(), extra, 6);
        var slot = transport == "mmio" ? m.AddMmio(dev, "rng") : m.AddPci(dev, "rng");
        var env = slot.Environment();
        using var drv = VirtioDriverDevice.Probe(slot.DriverTransport(), env, extra, 1, maxQueueSize: 6);
        var q = drv.Queue(0);
        ulong gpa = env.Platform.Allocator.Allocate(4096);
        // Split: an avail idx more than a queue ahead; packed: offsets at or past the ring under either wrap; on pci (where
        // the register, not the value, names the queue) also a value naming another queue. The device must not trust
        // the hint and still serve the queue.
        ushort size = q.Size;
        ushort[] bad = packed ? [size, (ushort)(0x8000 | size), 0x7FFF, 0xFFFF] : [(ushort)(size + 1), 0x8000];
        var values = bad.Select(b => (uint)b << 16).ToList();
        if (transport == "pci") values.Add(5u | (uint)q.NotifyOffWrap << 16);
        int n = 0;
        foreach (uint data in values)
        {
            Assert.Equal(QueueStatus.Ok, q.Add([], [new BufferSegment(gpa, 16)], n, out _));
            Assert.True(q.KickPrepare());
            drv.Transport.Notify(0, data);
            Assert.Equal(QueueStatus.Ok, q.GetUsed(out var token, out uint len));
            Assert.Equal(n++, token);
            Assert.Equal(16u, len);
            Assert.Null(slot.Core.LastNotificationData);   // never recorded as a position
        }
        Assert.Null(slot.Core.NeedsResetReason);
        Assert.Equal(values.Count, slot.Core.Events.Count(e => e.Contains("notification data")));
        // A good one is still taken.
        Assert.Equal(QueueStatus.Ok, q.Add([], [new BufferSegment(gpa, 16)], n, out _));
        drv.Kick(0);
        Assert.Equal((uint)q.NotifyOffWrap << 16, slot.Core.LastNotificationData);
    }

    [Fact]
    public void SplitStillRefusesNonPowerOfTwoPackedAcceptsAnySize()
    {
        using var rig = DmaRig.Create(DmaMode.Direct);
        Assert.Throws<ArgumentOutOfRangeException>(() => rig.CreateDriver(3, new QueueOptions()));
        using var d = rig.CreateDriver(3, new QueueOptions { Packed = true });
        Assert.Equal(3, d.Size);
        Assert.True(d.IsPacked);
        Assert.Throws<ArgumentOutOfRangeException>(() => new DeviceQueue<DeviceMemory<TranslatorRef, PortRef>>(
            rig.Device.Memory, d.DeviceLayout with { QueueSize = 6 }, new QueueOptions()));
    }

    [Fact]
    public void InOrderRefusesOutOfOrderCompletionByTheDeviceModel()
    {
        foreach (bool packed in new[] { false, true })
        {
            using var rig = DmaRig.Create(DmaMode.Direct);
            using var q = new QueuePair(rig, 4, new QueueOptions { Packed = packed, InOrder = true });
            q.AddOk([8], []);
            q.AddOk([8], []);
            Assert.Equal(QueueStatus.Ok, q.Device.Pop(out _));
            Assert.Equal(QueueStatus.Ok, q.Device.Pop(out var second));
            Assert.Throws<VirtqueueException>(() => q.Device.AddUsed(second!, 0));
            Assert.Throws<VirtqueueException>(() => new QueuePair(rig, 4).Device.AddUsedBatch([second!], 0));
        }
    }

    /// <summary>A device with extra feature bits and a chosen maximum queue size, to negotiate ring features.</summary>
    private sealed class WithFeatures<TMem>(IVirtioDevice<TMem> inner, ulong extra, ushort maxQueue) : IVirtioDevice<TMem>
        where TMem : struct, IDeviceMemory
    {
        public DeviceId DeviceId => inner.DeviceId;
        public ulong DeviceFeatures => inner.DeviceFeatures | extra;
        public int QueueCount => inner.QueueCount;
        public ushort MaxQueueSize => maxQueue;
        public int ConfigSize => inner.ConfigSize;
        public void ReadConfig(int offset, Span<byte> destination) => inner.ReadConfig(offset, destination);
        public void WriteConfig(int offset, ReadOnlySpan<byte> source) => inner.WriteConfig(offset, source);
        public bool AcceptFeatures(ulong features, out string? reason) => inner.AcceptFeatures(features, out reason);
        public void Activate(DeviceContext<TMem> context) => inner.Activate(context);
        public void QueueNotify(int queue) => inner.QueueNotify(queue);
        public void Reset() => inner.Reset();
    }

    [Theory]
    [InlineData("mmio", true, false, false)]
    [InlineData("mmio", true, true, true)]
    [InlineData("mmio", false, true, true)]
    [InlineData("pci", true, false, false)]
    [InlineData("pci", true, true, true)]
    [InlineData("pci", false, true, true)]
    public void TransportsNegotiateRingFeatures(string transport, bool packed, bool inOrder, bool notifData)
    {
        using var m = new SimMachine(new SimPlatformOptions());
        ulong extra = (packed ? VirtioFeature.Bit(VirtioFeature.RingPacked) : 0) | (inOrder ? VirtioFeature.Bit(VirtioFeature.InOrder) : 0)
                      | (notifData ? VirtioFeature.Bit(VirtioFeature.NotificationData) : 0);
        var dev = new WithFeatures<DeviceMemory<TranslatorRef, PortRef>>(new EntropyDevice<DeviceMemory<TranslatorRef, PortRef>>(), extra, 50);
        var slot = transport == "mmio" ? m.AddMmio(dev, "rng") : m.AddPci(dev, "rng");
        var env = slot.Environment();
        using var drv = VirtioDriverDevice.Probe(slot.DriverTransport(), env, extra, 1, maxQueueSize: 50);
        var q = drv.Queue(0);
        Assert.Equal(packed, q.IsPacked);
        Assert.Equal(packed ? 50 : 32, q.Size);   // packed takes the device's odd maximum; split rounds down to 2^n
        Assert.Equal(inOrder, q.Options.InOrder);
        ulong gpa = env.Platform.Allocator.Allocate(4096);
        for (int i = 0; i < 3 * q.Size + 7; i++)
        {
            Assert.Equal(QueueStatus.Ok, q.Add([], [new BufferSegment(gpa, 1 + (uint)i % 100)], i, out _));
            drv.Kick(0);
            Assert.Equal(QueueStatus.Ok, q.GetUsed(out var token, out uint len));
            Assert.Equal(i, token);
            Assert.Equal(1 + (uint)i % 100, len);
        }
        Assert.Null(slot.Core.NeedsResetReason);
        if (notifData)
        {
            Assert.NotNull(slot.Core.LastNotificationData);
            Assert.Equal(0u, slot.Core.LastNotificationData!.Value & 0xFFFF);
            Assert.Equal((uint)q.NotifyOffWrap, slot.Core.LastNotificationData!.Value >> 16);
        }
        else Assert.Null(slot.Core.LastNotificationData);
    }
}
