using System.Buffers.Binary;
using CsCheck;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.Testing;
using VirtioSharp.Tests.Support;

namespace VirtioSharp.Tests;

/// <summary>
/// Random garbage rings: whatever a driver writes, Pop terminates with a bounded number of accesses, only ever reaches
/// the ring and the data area, returns only chains that obey the rules, and once broken stays broken. Also a packed
/// driver racing the device's reads with inconsistent AVAIL/USED bits, and a device lying in its used ring (split and
/// packed) to the driver.
/// </summary>
public class HostileRingPropertyTests
{
    public sealed record RawDesc(bool Outside, int Offset, int Len, int Flags, int Next);

    public sealed record Garbage(RawDesc[] Descs, ushort[] Avail, ushort AvailIdx, int MaxChain, byte[] DataSeed)
    {
        public override string ToString() =>
            $"max={MaxChain} idx={AvailIdx} avail=[{string.Join(',', Avail)}] descs={string.Join(' ', Descs.Select(d => $"({(d.Outside ? "out" : "in")}+{d.Offset},{d.Len},f{d.Flags},n{d.Next})"))}";
    }

    private const ushort Size = 8;

    private static readonly Gen<RawDesc> GenDesc = Gen.Select(
        Gen.Int[0, 9].Select(x => x == 0), Gen.Int[0, 16], Gen.OneOf<int>(Gen.Int[0, 64], Gen.Int[0, 4096]), Gen.Int[0, 7], Gen.Int[0, 9],
        (o, off, len, f, n) => new RawDesc(o, off * 256, len, f, n));

    private static readonly Gen<Garbage> GenGarbage = Gen.Select(
        GenDesc.Array[Size], Gen.Int[0, 9].Select(x => (ushort)x).Array[Size],
        Gen.OneOf<ushort>(Gen.Int[0, 12].Select(x => (ushort)x), Gen.UShort), Gen.OneOf(3, 16, 1024), Gen.Byte.Array[64],
        (d, a, idx, max, seed) => new Garbage(d, a, idx, max, seed));

    [Fact]
    public void PopOnGarbageRingsIsBoundedConfinedAndSticky()
    {
        int broken = 0, popped = 0;
        GenGarbage.Sample(g =>
        {
            var (b, p) = Run(g);
            Interlocked.Add(ref broken, b);
            Interlocked.Add(ref popped, p);
        }, iter: 3000, print: g => g.ToString());
        // The generator reaches both outcomes, so the assertions above were exercised on each.
        Assert.True(broken > 100, $"{broken} broken");
        Assert.True(popped > 100, $"{popped} popped");
    }

    private static (int Broken, int Popped) Run(Garbage g)
    {
        using var rig = new HostileDriverRig(Size, new QueueOptions { MaxChainLength = g.MaxChain });
        // The data area is garbage too, so indirect tables are random descriptors.
        var fill = new byte[HostileDriverRig.DataBytes];
        for (int i = 0; i < fill.Length; i++) fill[i] = (byte)(g.DataSeed[i % g.DataSeed.Length] * 131 + (i >> 6));
        rig.Platform.Ram.Write(rig.DataGpa, fill);
        for (int i = 0; i < Size; i++)
        {
            var d = g.Descs[i];
            ulong addr = d.Outside ? rig.Platform.Options.RamSize + (ulong)d.Offset : rig.Data((ulong)d.Offset);
            rig.Desc(i, addr, (uint)d.Len, (DescFlags)d.Flags, (ushort)d.Next);
        }
        rig.Publish(g.Avail);
        rig.SetAvailIdx(g.AvailIdx);

        int popped = 0;
        for (int attempt = 0; attempt < 2 * Size + 2; attempt++)
        {
            var st = rig.Pop(out var chain);
            if (st == QueueStatus.Empty) break;
            if (st == QueueStatus.Broken)
            {
                Assert.NotEqual(QueueError.None, rig.Queue.Error);
                var err = rig.Queue.Error;
                Assert.Equal(QueueStatus.Broken, rig.Pop(out _));
                Assert.Equal(err, rig.Queue.Error);
                break;
            }
            Assert.Equal(QueueStatus.Ok, st);
            popped++;
            var c = chain!;
            Assert.InRange(c.Count, 1, g.MaxChain);
            Assert.True(c.Head < Size);
            Assert.True(c.ReadableBytes + c.WritableBytes <= uint.MaxValue);
            bool sawWritable = false;
            foreach (var s in c.Segments)
            {
                Assert.False(sawWritable && !s.Writable, "readable segment after a writable one");
                sawWritable |= s.Writable;
                Assert.True(s.Length == 0 || (s.Addr >= rig.Data() && s.Addr + s.Length <= rig.Data(HostileDriverRig.DataBytes)),
                    $"segment 0x{s.Addr:x}+{s.Length} outside the data area");
            }
            Assert.Equal(QueueStatus.Ok, rig.Queue.AddUsed(c, 0));
        }

        rig.Log.AssertTouchedOnlyWithin(rig.AllowedBusRanges);
        Assert.All(rig.Log.Writes, w => Assert.True(w.Addr >= rig.Layout.Used && w.Addr < rig.Layout.Used + SplitRingLayout.UsedBytes(Size)));
        // Bounded work: each pop reads at most its chain (direct plus one indirect table) and a few ring fields.
        Assert.True(rig.Log.Entries.Count <= (2 * Size + 2) * (2 * Math.Min(g.MaxChain, 1024) + Size + 8), $"{rig.Log.Entries.Count} accesses");
        return (rig.Queue.IsBroken ? 1 : 0, popped);
    }

    /// <summary>
    /// A packed driver that, while the device reads, turns published descriptors' AVAIL/USED bits into the inconsistent
    /// "used" combinations (AVAIL = USED). Such flips only ever take availability away, so every chain the device pops
    /// must be exactly the next one the driver made available; otherwise the pop is empty, or the queue breaks with a
    /// flags error during a pop that saw a flip. Once the driver stops, the rest pops intact.
    /// </summary>
    [Fact]
    public void PackedDriverFlippingAvailUsedBitsYieldsExactChainsOrAFlagsError()
    {
        int broken = 0, popped = 0, hidden = 0;
        Gen.Select(Gen.OneOf<ushort>(1, 2, 3, 5, 8, 13), Gen.Bool, Gen.OneOf(0.03, 0.1, 0.3), Gen.Int, (size, ind, p, seed) => (size, ind, p, seed)).Sample(c =>
        {
            using var rig = DmaRig.Create(DmaMode.Direct);
            var options = new QueueOptions { Packed = true, IndirectDesc = c.ind, MaxIndirect = 2 };
            using var driver = rig.CreateDriver(c.size, options);
            var ring = driver.DeviceLayout;
            var rng = new Random(c.seed);
            int flips = 0;
            bool racing = true;
            var hook = new ReadHook
            {
                AfterRead = (addr, b) =>
                {
                    if (!racing || addr < ring.Desc || addr >= ring.Desc + PackedRing.DescBytes(c.size)) return;
                    var flags = b.Length == 2 ? b : b.Length == PackedDesc.Size ? b[PackedDesc.FlagsOffset..] : default;
                    if (flags.IsEmpty || rng.NextDouble() >= c.p) return;
                    ushort f = BinaryPrimitives.ReadUInt16LittleEndian(flags);
                    if (((f & PackedRing.Avail) != 0) == ((f & PackedRing.Used) != 0)) return;   // only published-looking ones
                    ushort both = rng.Next(2) == 0 ? (ushort)0 : (ushort)(PackedRing.Avail | PackedRing.Used);
                    BinaryPrimitives.WriteUInt16LittleEndian(flags, (ushort)(f & ~(PackedRing.Avail | PackedRing.Used) | both));
                    flips++;
                },
            };
            var device = new DeviceQueue<HookedMemory<DeviceMemory<TranslatorRef, PortRef>>>(new(rig.Device.Memory, hook), ring, options);
            ulong buf = rig.AllocBuffer(4096, 0, new byte[4096]);
            var expected = new Queue<uint[]>();   // segment lengths of each chain, in the order made available

            int[] Lengths(DescriptorChain ch)
            {
                var l = new int[ch.Count];
                for (int i = 0; i < l.Length; i++) l[i] = (int)ch.Segments[i].Length;
                return l;
            }

            for (int round = 0; round < 30; round++)
            {
                for (int n = rng.Next(1, c.size + 1); n > 0; n--)
                {
                    var lens = Enumerable.Range(0, rng.Next(1, Math.Min((int)c.size, 4) + 1)).Select(_ => (uint)rng.Next(1, 512)).ToArray();
                    int reads = rng.Next(0, lens.Length + 1);
                    var segs = lens.Select(l => new BufferSegment(buf, l)).ToArray();
                    if (driver.Add(segs.AsSpan(0, reads), segs.AsSpan(reads), lens, out _) == QueueStatus.NoSpace) break;
                    expected.Enqueue(lens);
                }
                var inDevice = new List<DescriptorChain>();
                while (true)
                {
                    int before = flips;
                    var st = device.Pop(out var ch);
                    if (st == QueueStatus.Empty)
                    {
                        if (flips > before) Interlocked.Increment(ref hidden);   // a flip hid the head: not a chain, not an error
                        break;
                    }
                    if (st == QueueStatus.Broken)
                    {
                        Assert.True(flips > before, $"broke ({device.Error}) though the driver did not flip anything");
                        Assert.Contains(device.Error, new[] { QueueError.DescriptorFlagsInconsistent, QueueError.ChainDescriptorNotAvailable });
                        var err = device.Error;
                        Assert.Equal(QueueStatus.Broken, device.Pop(out _));
                        Assert.Equal(err, device.Error);
                        Interlocked.Increment(ref broken);
                        return;
                    }
                    Assert.Equal(expected.Dequeue(), Lengths(ch!).Select(l => (uint)l).ToArray());
                    Interlocked.Increment(ref popped);
                    inDevice.Add(ch!);
                }
                foreach (var ch in inDevice) Assert.Equal(QueueStatus.Ok, device.AddUsed(ch, 0));
                while (driver.GetUsed(out _, out _) == QueueStatus.Ok) { }
                Assert.False(driver.IsBroken, driver.ErrorDetail);
            }
            racing = false;
            while (device.Pop(out var rest) == QueueStatus.Ok) Assert.Equal(expected.Dequeue(), Lengths(rest!).Select(l => (uint)l).ToArray());
            Assert.Empty(expected);
            Assert.False(device.IsBroken, device.ErrorDetail);
        }, iter: 400);
        // Each outcome was reached, so the assertions on each ran.
        Assert.True(broken > 50 && popped > 1000 && hidden > 10, $"{broken} broken, {popped} popped, {hidden} hidden by a flip");
    }

    public enum UsedLie { WrongLapThenGood, IdOutOfRange, IdNotOutstanding, LengthTooLarge, IndexTooFarAhead, BatchPastIndex, InOrderBatchSkippingAhead }

    private sealed record Outstanding(QueuePair.Request Request, DescriptorChain Chain, int Slots)
    {
        public ushort Head => Chain.Head;
    }

    /// <summary>
    /// A device that completes honestly for a while, then writes one used element of its own: from a lap the driver is
    /// not in, with an id past the queue or not outstanding (never made available, or already returned), a length past
    /// the buffer, a used idx more than a queue ahead, an IN_ORDER batch reaching past the used idx, or an IN_ORDER batch
    /// naming a later buffer (valid: every buffer before it comes back in full). Split and packed, IN_ORDER on and off,
    /// every DMA mode. The driver returns exactly what the rules allow, or breaks with the lie's error keeping every
    /// mapping, stays broken, and gives every outstanding token back on reset.
    /// </summary>
    [Fact]
    public void DriverTakesBackOnlyWhatTheUsedRulesAllow()
    {
        var applied = new int[Enum.GetValues<UsedLie>().Length];
        Gen.Select(Gen.Bool, Gen.Bool, Gen.OneOf<ushort>(1, 2, 4, 8), Gen.Enum<DmaMode>(), Gen.Enum<UsedLie>(), Gen.Int[0, 10], Gen.Int,
            (packed, inOrder, size, mode, lie, rounds, seed) => (packed, inOrder, size, mode, lie, rounds, seed)).Sample(c =>
        {
            if (RunUsedLie(c.packed, c.inOrder, c.size, c.mode, c.lie, c.rounds, c.seed)) Interlocked.Increment(ref applied[(int)c.lie]);
        }, iter: 1500);
        Assert.All(applied, n => Assert.True(n > 20, $"lies applied: {string.Join(", ", applied)}"));
    }

    private static bool RunUsedLie(bool packed, bool inOrder, ushort size, DmaMode mode, UsedLie lie, int rounds, int seed)
    {
        using var rig = DmaRig.Create(mode);
        var rng = new Random(seed);
        using var q = new QueuePair(rig, size, new QueueOptions { Packed = packed, InOrder = inOrder, IndirectDesc = rng.Next(2) == 0, MaxIndirect = 2 });
        var outstanding = new List<Outstanding>();   // add order
        long usedPos = 0;                            // packed: absolute slot of the next used descriptor; split: used idx

        void AddAndPop(int n)
        {
            for (; n > 0; n--)
            {
                int free = q.Driver.FreeDescriptors;
                int segs = rng.Next(1, Math.Min(3, (int)size) + 1), reads = rng.Next(0, segs + 1);
                var st = q.Add(Enumerable.Range(0, reads).Select(_ => rng.Next(1, 200)).ToArray(),
                               Enumerable.Range(0, segs - reads).Select(_ => rng.Next(1, 200)).ToArray(), out var r, out _);
                if (st == QueueStatus.NoSpace) break;
                Assert.Equal(QueueStatus.Ok, st);
                Assert.Equal(QueueStatus.Ok, q.Device.Pop(out var ch));
                outstanding.Add(new Outstanding(r, ch!, free - q.Driver.FreeDescriptors));
            }
        }

        // Takes back what the driver returns; checks it is `expect` in order with the given lengths.
        void Expect(IReadOnlyList<(Outstanding O, uint Len)> expect)
        {
            var got = new List<(object Token, uint Len)>();
            while (q.Driver.GetUsed(out var token, out uint len) == QueueStatus.Ok) got.Add((token!, len));
            Assert.False(q.Driver.IsBroken, q.Driver.ErrorDetail);
            Assert.Equal(expect.Select(e => ((object)e.O.Request, e.Len)), got);
            foreach (var (o, _) in expect)
            {
                outstanding.Remove(o);
                usedPos += packed ? o.Slots : 1;
            }
        }

        // Honest rounds: IN_ORDER completes a prefix (batched or not), otherwise a random subset in random order.
        for (int r = 0; r < rounds; r++)
        {
            AddAndPop(rng.Next(0, size + 1));
            var done = inOrder ? outstanding.Take(rng.Next(0, outstanding.Count + 1)).ToList()
                               : outstanding.Where(_ => rng.Next(2) == 0).OrderBy(_ => rng.Next()).ToList();
            var lens = done.Select(o => (uint)rng.Next(0, (int)o.Request.WritableBytes + 1)).ToList();
            var expect = new List<(Outstanding, uint)>();
            if (inOrder && done.Count > 1 && rng.Next(2) == 0)
            {
                Assert.Equal(QueueStatus.Ok, CompleteBatch(done, lens[^1]));
                for (int i = 0; i < done.Count; i++) expect.Add((done[i], i + 1 < done.Count ? done[i].Request.WritableBytes : lens[^1]));
            }
            else
                for (int i = 0; i < done.Count; i++)
                {
                    Assert.Equal(QueueStatus.Ok, Complete(done[i], lens[i]));
                    expect.Add((done[i], lens[i]));
                }
            Expect(expect);
        }

        // The lie needs buffers outstanding (two for a batch) and, for a stray id, an id that is not.
        AddAndPop(Math.Min(2, (int)size) - outstanding.Count);
        var notOutstanding = Enumerable.Range(0, size).Where(id => outstanding.All(o => o.Head != id)).ToList();
        bool applicable = outstanding.Count > 0 && lie switch
        {
            UsedLie.IdNotOutstanding => notOutstanding.Count > 0,
            UsedLie.IndexTooFarAhead => !packed,
            UsedLie.BatchPastIndex => !packed && inOrder && outstanding.Count >= 2,
            _ => true,
        };
        if (!applicable) return false;

        int slot = (int)(usedPos % size);
        bool wrap = usedPos / size % 2 == 0;
        int pick = rng.Next(outstanding.Count);
        var x = outstanding[pick];
        uint okLen = (uint)rng.Next(0, (int)x.Request.WritableBytes + 1);
        ushort batch = (ushort)(inOrder ? pick + 1 : 1);   // used entries the element stands for
        QueueError error;
        switch (lie)
        {
            case UsedLie.WrongLapThenGood:
                // Packed: a used descriptor for the other lap; split: an element the used idx does not cover. Not seen.
                if (packed) q.WritePackedUsed(slot, x.Head, okLen, !wrap);
                else q.WriteUsedElem(slot, x.Head, okLen);
                Assert.False(q.Driver.HasUsed);
                Assert.Equal(QueueStatus.Empty, q.Driver.GetUsed(out _, out _));
                var first = outstanding[0];
                Assert.Equal(QueueStatus.Ok, Complete(first, okLen = Math.Min(okLen, first.Request.WritableBytes)));
                Expect([(first, okLen)]);
                return true;
            case UsedLie.InOrderBatchSkippingAhead:
                // Valid: one element naming a later buffer returns it and every buffer before it (IN_ORDER); without
                // IN_ORDER, just that buffer.
                WriteUsed(x.Head, okLen, batch);
                Expect(inOrder
                    ? outstanding.Take(pick + 1).Select((o, i) => (o, i < pick ? o.Request.WritableBytes : okLen)).ToList()
                    : [(x, okLen)]);
                return true;
            case UsedLie.IdOutOfRange:
                WriteUsed((uint)rng.Next(size, packed ? 65536 : int.MaxValue), 0, 1);
                error = QueueError.UsedIdOutOfRange;
                break;
            case UsedLie.IdNotOutstanding:
                WriteUsed((uint)notOutstanding[rng.Next(notOutstanding.Count)], 0, 1);
                error = QueueError.UsedIdNotOutstanding;
                break;
            case UsedLie.LengthTooLarge:
                WriteUsed(x.Head, x.Request.WritableBytes + 1 + (uint)rng.Next(0, 100_000), batch);
                error = QueueError.UsedLengthTooLarge;
                break;
            case UsedLie.IndexTooFarAhead:
                WriteUsed(outstanding[0].Head, 0, (ushort)rng.Next(size + 1, 65536));
                error = QueueError.UsedIndexTooFarAhead;
                break;
            default:   // BatchPastIndex: names the (pick+1)-th buffer, but used idx moved by fewer
                pick = rng.Next(1, outstanding.Count);
                x = outstanding[pick];
                WriteUsed(x.Head, 0, (ushort)rng.Next(1, pick + 1));
                error = QueueError.UsedBatchPastIndex;
                break;
        }

        long mappings = outstanding.Sum(o => (long)o.Request.Readable.Length + o.Request.Writable.Length);
        Assert.Equal(QueueStatus.Broken, q.Driver.GetUsed(out var tok, out uint l));
        Assert.Null(tok);
        Assert.Equal(0u, l);
        Assert.Equal(error, q.Driver.Error);
        Assert.False(string.IsNullOrEmpty(q.Driver.ErrorDetail));
        Assert.Equal(mappings, rig.Ops.Stats.Outstanding);   // nothing unmapped on the device's word
        Assert.Equal(outstanding.Count, q.Driver.Outstanding);
        Assert.False(q.Driver.HasUsed);
        Assert.Equal(QueueStatus.Broken, q.Driver.GetUsed(out _, out _));
        Assert.Equal(QueueStatus.Broken, q.Add([8], [], out _, out _));
        Assert.Equal(error, q.Driver.Error);
        var back = q.Driver.DetachUnused();
        Assert.Equal(outstanding.Select(o => (object)o.Request).ToHashSet(), back.ToHashSet());
        Assert.Equal(outstanding.Count, back.Count);
        Assert.Equal(0, rig.Ops.Stats.Outstanding);
        return true;

        QueueStatus Complete(Outstanding o, uint len) => q.Device.AddUsed(o.Chain, len);

        QueueStatus CompleteBatch(List<Outstanding> os, uint len) => q.Device.AddUsedBatch(os.Select(o => o.Chain).ToArray(), len);

        // The hostile element at the driver's next used position; split moves used idx by `advance`.
        void WriteUsed(uint id, uint len, ushort advance)
        {
            if (packed) q.WritePackedUsed(slot, (ushort)id, len, wrap);
            else
            {
                q.WriteUsedElem(slot, id, len);
                q.WriteUsedIdx((ushort)(usedPos + advance));
            }
        }
    }
}
