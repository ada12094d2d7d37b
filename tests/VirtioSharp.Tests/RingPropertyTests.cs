using System.Collections.Concurrent;
using CsCheck;
using VirtioSharp.Dma;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

/// <summary>
/// Property tests: random chains (segment counts and sizes, buffer offsets, indirect on/off, event idx on/off, queue
/// sizes, out-of-order completion, random device write lengths) in every DMA mode, over split and packed rings, with
/// IN_ORDER on or off (then completion is in order, in random batches that write one used element each). Driver and
/// device must agree on every byte and every used length, notifications must never be lost nor sent where the peer's
/// flags disabled them, both sides must end at the ring position (and wrap counters) the slot count says, and nothing
/// may leak.
/// </summary>
public class RingPropertyTests
{
    public sealed record ChainSpec(int[] Read, int[] Write, int Offset)
    {
        public int Segments => Read.Length + Write.Length;
        public override string ToString() => $"[{string.Join(',', Read)}|{string.Join(',', Write)}]+{Offset}";
    }

    public sealed record Scenario(bool EventIdx, bool Indirect, int MaxIndirect, ushort QueueSize, ChainSpec[] Chains, int Seed)
    {
        public bool Packed { get; init; }
        public bool InOrder { get; init; }
        public override string ToString() =>
            $"packed={Packed} inOrder={InOrder} eventIdx={EventIdx} indirect={Indirect} maxIndirect={MaxIndirect} size={QueueSize} seed={Seed} chains={string.Join(' ', Chains.Select(c => c.ToString()))}";
    }

    private static readonly Gen<int> SegLen = Gen.OneOf<int>(Gen.Int[1, 64], Gen.Int[1, 5000], Gen.Int[4090, 4100]);

    private static readonly Gen<ChainSpec> GenChain =
        Gen.Select(SegLen.Array[0, 5], SegLen.Array[0, 4], Gen.Int[0, 127], (r, w, o) => new ChainSpec(r, w, o))
           .Where(c => c.Segments > 0);

    private static readonly Gen<Scenario> GenScenario = Gen.Select(
        Gen.Bool, Gen.Bool, Gen.OneOf(2, 4, 64), Gen.OneOf<ushort>(16, 32, 64), GenChain.Array[1, 40], Gen.Int,
        (e, i, mi, qs, chains, seed) => new Scenario(e, i, mi, qs, chains, seed));

    private sealed class Req(ChainSpec spec)
    {
        public ChainSpec Spec { get; } = spec;
        public BufferSegment[] Readable = [];
        public BufferSegment[] Writable = [];
        public byte[] ReadData = [];
        public byte[] Prefill = [];
        public byte[] DeviceWrote = [];
        public bool Done;
    }

    // Packed rings need not be a power of two (§2.8.10.1): odd sizes too, all large enough for a 9-segment chain.
    private static readonly Gen<ushort> PackedSize = Gen.OneOf<ushort>(10, 13, 16, 33, 64, 100);

    public static TheoryData<DmaMode, bool> Modes()
    {
        var data = new TheoryData<DmaMode, bool>();
        foreach (var m in Enum.GetValues<DmaMode>()) { data.Add(m, false); data.Add(m, true); }
        return data;
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public void RandomChainsRoundTripExactlyWithoutLeaks(DmaMode mode, bool packed)
    {
        long chains = 0;
        var combos = new ConcurrentDictionary<(bool EventIdx, bool Indirect, bool InOrder), int>();
        var gen = Gen.Select(GenScenario, Gen.Bool, PackedSize, (s, inOrder, ps) =>
            s with { Packed = packed, InOrder = inOrder, QueueSize = packed ? ps : s.QueueSize });
        gen.Sample(s =>
        {
            Run(mode, s);
            Interlocked.Add(ref chains, s.Chains.Length);
            combos.AddOrUpdate((s.EventIdx, s.Indirect, s.InOrder), 1, (_, n) => n + 1);
        }, iter: 150, print: s => s.ToString());
        Assert.True(chains >= 1000, $"only {chains} chains were run");
        // Every event-idx x indirect x in-order combination ran in this DMA mode and layout.
        Assert.Equal(8, combos.Count);
    }

    public static TheoryData<ushort, bool> EdgeSizes()
    {
        var data = new TheoryData<ushort, bool>();
        foreach (ushort size in new ushort[] { 1, 2, 3, 256, 32768 })
            foreach (bool packed in new[] { false, true })
                // Split 32768 needs a chain per slot (~100k a lap): WrapsAroundManyTimes covers it in one mode.
                if (packed || (SplitRingLayout.IsValidSize(size) && size <= 256)) data.Add(size, packed);
        return data;
    }

    /// <summary>
    /// The same round trip at the queue sizes where wrapping is hardest (1, 2, 3, 256, 32768), in every DMA mode, with
    /// random chains streamed until the ring has wrapped many times; packed chains cross the end of the ring wherever they
    /// fall.
    /// </summary>
    [Theory]
    [MemberData(nameof(EdgeSizes))]
    public void EdgeSizesWrapManyTimesInEveryDmaMode(ushort size, bool packed)
    {
        bool huge = size > 256;
        int laps = size <= 3 ? 200 : huge ? 4 : 8;
        int iterPerMode = size <= 3 ? 8 : huge ? 1 : 2;
        var gen = Gen.Select(Gen.Bool, Gen.Bool, Gen.Bool, Gen.OneOf(2, 4), Gen.Int,
            (e, i, o, mi, seed) => new Scenario(e, i, mi, size, [], seed) { Packed = packed, InOrder = o });
        foreach (var mode in Enum.GetValues<DmaMode>())
            gen.Sample(s =>
            {
                var chainRng = new Random(s.Seed ^ 0x5eed);
                long target = (long)laps * size;
                var stats = Run(mode, s, st => st.SlotsAdded < target ? EdgeChain(chainRng, s) : null, ramSize: huge ? 32UL << 20 : 8UL << 20);
                Assert.True(stats.SlotsAdded / size >= laps, $"only {stats.SlotsAdded} slots for {laps} laps of {size}");
            }, iter: iterPerMode, print: s => $"mode={mode} {s}");
    }

    // Chains that always fit: at most the ring size, or (indirect) a table that takes one slot.
    private static ChainSpec EdgeChain(Random rng, Scenario s)
    {
        int cap = s.QueueSize > 3 ? 16 : 6;
        int max = Math.Max(Math.Min(s.QueueSize, cap), s.Indirect ? s.MaxIndirect : 1);
        int segs = rng.Next(1, max + 1);
        int reads = rng.Next(0, segs + 1);
        int Len() => rng.Next(8) switch { 0 => rng.Next(1, 5000), 1 => rng.Next(4090, 4101), _ => rng.Next(1, 65) };
        return new ChainSpec(Enumerable.Range(0, reads).Select(_ => Len()).ToArray(),
            Enumerable.Range(0, segs - reads).Select(_ => Len()).ToArray(), rng.Next(0, 128));
    }

    private static Req Build(DmaRig rig, ChainSpec spec, Random rng)
    {
        var req = new Req(spec)
        {
            ReadData = new byte[spec.Read.Sum()],
            Prefill = new byte[spec.Write.Sum()],
        };
        rng.NextBytes(req.ReadData);
        rng.NextBytes(req.Prefill);
        req.Readable = Place(rig, spec.Read, spec.Offset, req.ReadData);
        req.Writable = Place(rig, spec.Write, spec.Offset, req.Prefill);
        return req;
    }

    private static BufferSegment[] Place(DmaRig rig, int[] lengths, int offset, byte[] data)
    {
        var segs = new BufferSegment[lengths.Length];
        int at = 0;
        for (int i = 0; i < lengths.Length; i++)
        {
            segs[i] = new BufferSegment(rig.AllocBuffer(lengths[i], offset, data.AsSpan(at, lengths[i])), (uint)lengths[i]);
            at += lengths[i];
        }
        return segs;
    }

    private static void Free(DmaRig rig, Req r)
    {
        foreach (var s in r.Readable.Concat(r.Writable)) rig.FreeBuffer(s.Gpa, (int)s.Length);
    }

    private static byte[] ReadBack(DmaRig rig, BufferSegment[] segs) =>
        segs.SelectMany(s => rig.CpuRead(s.Gpa, (int)s.Length)).ToArray();

    /// <summary>What a run has done so far; the chain source sees it to decide when to stop.</summary>
    private sealed class RunStats
    {
        public int Added;
        /// <summary>Ring slots taken: descriptors for packed, avail entries for split.</summary>
        public long SlotsAdded;
        public long SlotsPopped;
    }

    private static RunStats Run(DmaMode mode, Scenario s) =>
        Run(mode, s, st => st.Added < s.Chains.Length ? s.Chains[st.Added] : null);

    private static RunStats Run(DmaMode mode, Scenario s, Func<RunStats, ChainSpec?> nextChain, ulong ramSize = 8UL << 20)
    {
        using var rig = DmaRig.Create(mode, ramSize);
        int pagesBefore = rig.Platform.Allocator.UsedPages;
        var options = new QueueOptions { EventIdx = s.EventIdx, IndirectDesc = s.Indirect, MaxIndirect = s.MaxIndirect, Packed = s.Packed, InOrder = s.InOrder };
        var q = new QueuePair(rig, s.QueueSize, options);
        var driver = q.Driver;
        var device = q.Device;
        var rng = new Random(s.Seed);
        var stats = new RunStats();
        var notPopped = new Queue<Req>();
        var inDevice = new List<(DescriptorChain Chain, Req Req)>();
        ChainSpec? pending = null;   // a chain that did not fit yet
        bool exhausted = false;
        int completed = 0;
        bool deviceWaiting = false, driverWaiting = false, deviceHolding = false, driverHolding = false;
        // Where "disabled" is a flag the peer must obey: packed DISABLE, split NO_NOTIFY / NO_INTERRUPT. Split EVENT_IDX
        // only stops moving the event index, so notifications may still come.
        bool binding = s.Packed || !s.EventIdx;

        while (!exhausted || completed < stats.Added)
        {
            // Driver: add a random batch.
            int batch = rng.Next(1, 9), added = 0;
            while (added < batch && !exhausted)
            {
                var spec = pending ?? nextChain(stats);
                if (spec is null) { exhausted = true; break; }
                pending = spec;
                var req = Build(rig, spec, rng);
                int freeBefore = driver.FreeDescriptors;
                var st = driver.Add(req.Readable, req.Writable, req, out var dma);
                if (st == QueueStatus.NoSpace || st == QueueStatus.MapFailed && dma == DmaStatus.Exhausted && driver.Outstanding > 0)
                {
                    Free(rig, req);
                    break;
                }
                Assert.Equal(QueueStatus.Ok, st);
                pending = null;
                stats.Added++;
                stats.SlotsAdded += s.Packed ? freeBefore - driver.FreeDescriptors : 1;
                notPopped.Enqueue(req);
                added++;
            }
            bool kick = driver.KickPrepare();
            if (deviceWaiting && added > 0) Assert.True(kick, "lost wakeup: the device asked for a notification and the driver did not kick");
            if (deviceHolding && binding) Assert.False(kick, "the device disabled notifications and the driver kicked");
            Assert.False(added == 0 && driver.Outstanding == 0 && pending is not null, "no progress possible");

            // Device: pop everything, in the order the driver added it.
            if (rng.Next(2) == 0) device.DisableNotifications();
            QueueStatus ps;
            while ((ps = device.Pop(out var chain)) == QueueStatus.Ok)
            {
                var req = notPopped.Dequeue();
                VerifyChainOnDevice(device, chain!, req);
                stats.SlotsPopped += chain!.RingDescriptors;
                inDevice.Add((chain!, req));
            }
            Assert.Equal(QueueStatus.Empty, ps);
            Assert.Empty(notPopped);

            // Device: complete a random subset in random order (everything if the driver could not add). IN_ORDER: a prefix
            // in pop order, in random batches; a batch's earlier chains are written in full (§2.7.9, §2.8.20).
            var order = s.InOrder ? inDevice.ToList() : inDevice.OrderBy(_ => rng.Next()).ToList();
            int k = added == 0 ? order.Count : rng.Next(0, order.Count + 1);
            var usedBatch = new List<DescriptorChain>();
            int batchEnd = 0;
            for (int i = 0; i < k; i++)
            {
                var (chain, req) = order[i];
                if (s.InOrder && i >= batchEnd) batchEnd = i + rng.Next(1, 5);
                bool skipped = s.InOrder && i + 1 < Math.Min(batchEnd, k);
                int n = skipped ? (int)chain.WritableBytes : rng.Next(0, (int)chain.WritableBytes + 1);
                req.DeviceWrote = new byte[n];
                rng.NextBytes(req.DeviceWrote);
                var writer = new ChainWriter<DeviceMemory<TranslatorRef, PortRef>>(device.Memory, chain);
                Assert.Equal(MemStatus.Ok, writer.Write(req.DeviceWrote, out int written));
                Assert.Equal(n, written);
                Assert.Equal((uint)n, writer.Written);
                inDevice.Remove((chain, req));
                if (!s.InOrder) { Assert.Equal(QueueStatus.Ok, device.AddUsed(chain, writer.Written)); continue; }
                usedBatch.Add(chain);
                if (skipped) continue;
                if (usedBatch.Count == 1) Assert.Equal(QueueStatus.Ok, device.AddUsed(chain, writer.Written));
                else Assert.Equal(QueueStatus.Ok, device.AddUsedBatch(usedBatch.ToArray(), writer.Written));
                usedBatch.Clear();
            }
            bool irq = device.NeedsInterrupt();
            if (driverWaiting && k > 0) Assert.True(irq, "lost interrupt: the driver re-enabled callbacks and the device did not interrupt");
            if (driverHolding && binding) Assert.False(irq, "the driver disabled callbacks and the device interrupted");
            // Now and then the device keeps polling with notifications off for a round.
            deviceHolding = rng.Next(4) == 0;
            if (deviceHolding) device.DisableNotifications();
            deviceWaiting = !deviceHolding && !device.EnableNotifications();

            // Driver: collect and check every byte.
            if (rng.Next(2) == 0) driver.DisableCallbacks();
            QueueStatus gs;
            while ((gs = driver.GetUsed(out var token, out uint len)) == QueueStatus.Ok)
            {
                var req = Assert.IsType<Req>(token);
                Assert.False(req.Done, "a token came back twice");
                req.Done = true;
                Assert.Equal((uint)req.DeviceWrote.Length, len);
                var back = ReadBack(rig, req.Writable);
                Assert.Equal(req.DeviceWrote, back.AsSpan(0, (int)len).ToArray());
                Assert.Equal(req.Prefill.AsSpan((int)len).ToArray(), back.AsSpan((int)len).ToArray());
                Assert.Equal(req.ReadData, ReadBack(rig, req.Readable));
                Free(rig, req);
                completed++;
            }
            Assert.Equal(QueueStatus.Empty, gs);
            driverHolding = rng.Next(4) == 0;
            if (driverHolding) driver.DisableCallbacks();
            driverWaiting = !driverHolding && driver.EnableCallbacks();
        }

        Assert.Equal(0, driver.Outstanding);
        Assert.Equal(0, device.InFlight);
        Assert.Equal(driver.Size, driver.FreeDescriptors);
        Assert.False(driver.IsBroken || device.IsBroken);
        AssertRingPositions(s, stats, driver, device);
        rig.AssertNoLeaksOrFaults(q.RingIovaPages);
        q.Dispose();
        Assert.Equal(0, rig.IovaPagesInUse());
        Assert.Equal(pagesBefore, rig.Platform.Allocator.UsedPages);
        return stats;
    }

    // With everything used, both sides sit where the slot count says, wrap counters included (§2.8.1).
    private static void AssertRingPositions(Scenario s, RunStats stats, DriverQueue driver, DeviceQueue<DeviceMemory<TranslatorRef, PortRef>> device)
    {
        Assert.Equal(stats.SlotsAdded, stats.SlotsPopped);
        if (!s.Packed)
        {
            Assert.Equal((ushort)stats.Added, device.NextAvail);
            Assert.Equal((ushort)stats.Added, device.NextUsed);
            Assert.Equal((ushort)stats.Added, driver.NotifyOffWrap);
            return;
        }
        int off = (int)(stats.SlotsAdded % s.QueueSize);
        bool wrap = stats.SlotsAdded / s.QueueSize % 2 == 0;
        Assert.Equal(off, device.NextAvail);
        Assert.Equal(off, device.NextUsed);
        Assert.Equal(wrap, device.AvailWrapCounter);
        Assert.Equal(wrap, device.UsedWrapCounter);
        Assert.Equal(PackedRing.OffWrap(off, wrap), driver.NotifyOffWrap);
    }

    private static void VerifyChainOnDevice(DeviceQueue<DeviceMemory<TranslatorRef, PortRef>> device, DescriptorChain chain, Req req)
    {
        Assert.Equal((ulong)req.ReadData.Length, chain.ReadableBytes);
        Assert.Equal((ulong)req.Prefill.Length, chain.WritableBytes);
        Assert.Equal(req.Spec.Read, chain.Readable.ToArray().Select(x => (int)x.Length).ToArray());
        Assert.Equal(req.Spec.Write, chain.Writable.ToArray().Select(x => (int)x.Length).ToArray());
        var seen = new byte[req.ReadData.Length];
        var reader = new ChainReader<DeviceMemory<TranslatorRef, PortRef>>(device.Memory, chain);
        Assert.Equal(MemStatus.Ok, reader.Read(seen, out int read));
        Assert.Equal(seen.Length, read);
        Assert.Equal(req.ReadData, seen);
    }
}
