using CsCheck;
using VirtioSharp.Dma;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Tests.Support;

namespace VirtioSharp.Tests;

/// <summary>
/// Property tests: random chains (segment counts and sizes, buffer offsets, indirect on/off, event idx on/off, queue
/// sizes, out-of-order completion, random device write lengths) in every DMA mode, over split and packed rings, with
/// IN_ORDER on or off (then completion is in order, in random batches that write one used element each). Driver and
/// device must agree on every byte and every used length, notifications must never be lost, and nothing may leak.
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
        var gen = Gen.Select(GenScenario, Gen.Bool, PackedSize, (s, inOrder, ps) =>
            s with { Packed = packed, InOrder = inOrder, QueueSize = packed ? ps : s.QueueSize });
        gen.Sample(s =>
        {
            Run(mode, s);
            Interlocked.Add(ref chains, s.Chains.Length);
        }, iter: 150, print: s => s.ToString());
        Assert.True(chains >= 1000, $"only {chains} chains were run");
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

    private static void Run(DmaMode mode, Scenario s)
    {
        using var rig = DmaRig.Create(mode);
        int pagesBefore = rig.Platform.Allocator.UsedPages;
        var options = new QueueOptions { EventIdx = s.EventIdx, IndirectDesc = s.Indirect, MaxIndirect = s.MaxIndirect, Packed = s.Packed, InOrder = s.InOrder };
        var q = new QueuePair(rig, s.QueueSize, options);
        var driver = q.Driver;
        var device = q.Device;
        var rng = new Random(s.Seed);
        var notPopped = new Queue<Req>();
        var inDevice = new List<(DescriptorChain Chain, Req Req)>();
        int next = 0, completed = 0;
        bool deviceWaiting = false, driverWaiting = false;

        while (completed < s.Chains.Length)
        {
            // Driver: add a random batch.
            int batch = rng.Next(1, 9), added = 0;
            while (added < batch && next < s.Chains.Length)
            {
                var req = Build(rig, s.Chains[next], rng);
                var st = driver.Add(req.Readable, req.Writable, req, out var dma);
                if (st == QueueStatus.NoSpace || st == QueueStatus.MapFailed && dma == DmaStatus.Exhausted && driver.Outstanding > 0)
                {
                    Free(rig, req);
                    break;
                }
                Assert.Equal(QueueStatus.Ok, st);
                notPopped.Enqueue(req);
                next++;
                added++;
            }
            bool kick = driver.KickPrepare();
            if (deviceWaiting && added > 0) Assert.True(kick, "lost wakeup: the device asked for a notification and the driver did not kick");
            Assert.False(added == 0 && driver.Outstanding == 0 && next < s.Chains.Length, "no progress possible");

            // Device: pop everything, in the order the driver added it.
            if (rng.Next(2) == 0) device.DisableNotifications();
            QueueStatus ps;
            while ((ps = device.Pop(out var chain)) == QueueStatus.Ok)
            {
                var req = notPopped.Dequeue();
                VerifyChainOnDevice(device, chain!, req);
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
            deviceWaiting = !device.EnableNotifications();

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
            driverWaiting = driver.EnableCallbacks();
        }

        Assert.Equal(0, driver.Outstanding);
        Assert.Equal(0, device.InFlight);
        Assert.Equal(driver.Size, driver.FreeDescriptors);
        Assert.False(driver.IsBroken || device.IsBroken);
        rig.AssertNoLeaksOrFaults(q.RingIovaPages);
        q.Dispose();
        Assert.Equal(0, rig.IovaPagesInUse());
        Assert.Equal(pagesBefore, rig.Platform.Allocator.UsedPages);
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
