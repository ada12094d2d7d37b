using System.Runtime.InteropServices;
using CsCheck;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.Testing;
using VirtioSharp.VhostUser.Backend;

namespace VirtioSharp.Tests;

/// <summary>
/// Packed-ring inflight tracking (vhost-user.rst "Inflight I/O tracking", packed layout): a device killed at any point
/// of popping or using chains is replaced by a new one over the same ring and the same inflight region, and the driver
/// still gets every buffer back exactly once.
/// </summary>
public unsafe class PackedInflightTests
{
    /// <summary>Where the device process dies.</summary>
    public enum Crash
    {
        BetweenOperations,
        /// <summary>The chain's descriptors and in-flight mark are recorded, old_free_head not yet moved.</summary>
        MidPop,
        /// <summary>A chain joined the used batch (free list changed), nothing published.</summary>
        AfterUsing,
        /// <summary>used_idx advanced in the region; the used descriptor's flags not yet written.</summary>
        BeforeFlags,
        /// <summary>The used descriptor is visible to the driver; the region's "old" fields not yet committed.</summary>
        AfterFlags,
    }

    private sealed class CrashException : Exception;

    /// <summary>Forwards to the real log and dies at the chosen point.</summary>
    private sealed class DyingLog(PackedInflightQueue inner, Crash at, int afterCalls) : IPackedInflightLog
    {
        private int _calls;
        public bool Died { get; private set; }
        private void Maybe(Crash point)
        {
            if (point == at && _calls++ == afterCalls) { Died = true; throw new CrashException(); }
        }

        public ushort Popped(DescriptorChain chain)
        {
            ushort e = inner.Popped(chain);
            if (at == Crash.MidPop && _calls++ == afterCalls)
            {
                Died = true;
                OnMidPop?.Invoke(e);
                throw new CrashException();
            }
            return e;
        }

        public Action<ushort>? OnMidPop;
        public void Using(ushort entry) { inner.Using(entry); Maybe(Crash.AfterUsing); }
        public void Publishing(int nextUsed, bool usedWrap) { inner.Publishing(nextUsed, usedWrap); Maybe(Crash.BeforeFlags); }
        public void Committed() { Maybe(Crash.AfterFlags); inner.Committed(); }
    }

    public static TheoryData<Crash, bool, ushort, bool> Cases()
    {
        var d = new TheoryData<Crash, bool, ushort, bool>();
        foreach (Crash c in Enum.GetValues<Crash>())
            foreach (bool inOrder in new[] { false, true })
                foreach (ushort size in new ushort[] { 1, 3, 16 })
                    foreach (bool indirect in new[] { false, true })   // direct: chains of 1-3 ring slots, entries linked
                        d.Add(c, inOrder, size, indirect);
        return d;
    }

    [Theory]
    [MemberData(nameof(Cases))]
    public void EveryRequestCompletesExactlyOnceAcrossACrash(Crash crash, bool inOrder, ushort size, bool indirect)
    {
        for (int seed = 0; seed < 40; seed++) RunCrash(crash, inOrder, size, indirect, seed);
    }

    [Fact]
    public void RandomCrashesAcrossManyWraps()
    {
        Gen.Select(Gen.Enum<Crash>(), Gen.Bool, Gen.OneOf<ushort>(1, 2, 5, 8, 33), Gen.Bool, Gen.Int[0, 100_000])
            .Sample((c, o, s, ind, seed) => RunCrash(c, o, s, ind, seed, restarts: 4), iter: 200);
    }

    private static void RunCrash(Crash crash, bool inOrder, ushort size, bool indirect, int seed, int restarts = 1)
    {
        using var rig = DmaRig.Create(DmaMode.Direct);
        var options = new QueueOptions { Packed = true, InOrder = inOrder, IndirectDesc = indirect, MaxIndirect = 3 };
        using var q = new QueuePair(rig, size, options);
        nint region = (nint)NativeMemory.AllocZeroed((nuint)PackedInflightQueue.QueueBytes(size));
        try
        {
            var rng = new Random(seed);
            var log = new PackedInflightQueue((byte*)region, size);
            log.Initialize(0, true);
            var dev = q.Device;
            dev.PackedInflight = log;
            var outstanding = new Dictionary<object, (ulong Buf, uint Len)>();
            var completed = new HashSet<object>();
            int lives = restarts;
            var popped = new List<DescriptorChain>();   // in flight on the current device; lost with it
            for (int round = 0; round < 60; round++)
            {
                // Driver: add a few chains (1..3 writable segments; the driver goes indirect for some).
                for (int n = rng.Next(0, size + 1); n > 0; n--)
                {
                    int segs = rng.Next(1, 4);
                    var w = Enumerable.Range(0, segs).Select(_ => new BufferSegment(rig.AllocBuffer(8, 0, new byte[8]), 8)).ToArray();
                    var token = new object();
                    var st = q.Driver.Add([], w, token, out _);
                    if (st == QueueStatus.NoSpace) break;
                    Assert.Equal(QueueStatus.Ok, st);
                    outstanding[token] = (w[0].Gpa, (uint)(8 * segs));
                }
                q.Driver.KickPrepare();

                var dying = lives > 0 && rng.Next(3) == 0 ? new DyingLog(log, crash, rng.Next(0, 3)) : null;
                if (dying is not null && crash == Crash.MidPop)
                    dying.OnMidPop = e => { *(ushort*)(region + 12) = e; *(ushort*)(region + 14) = e; };   // undo the list moves
                if (dying is not null) dev.PackedInflight = dying;
                try
                {
                    while (dev.Pop(out var c) == QueueStatus.Ok) popped.Add(c!);
                    Assert.False(dev.IsBroken, dev.ErrorDetail);
                    var done = inOrder ? popped.Take(rng.Next(popped.Count + 1)).ToList() : popped.Where(_ => rng.Next(2) == 0).ToList();
                    if (inOrder && done.Count > 1 && rng.Next(2) == 0)
                    {
                        foreach (var c in done) Stamp(rig, c);
                        Assert.Equal(QueueStatus.Ok, dev.AddUsedBatch(done.ToArray(), (uint)done[^1].WritableBytes));
                    }
                    else
                        foreach (var c in done)
                        {
                            Stamp(rig, c);
                            Assert.Equal(QueueStatus.Ok, dev.AddUsed(c, (uint)c.WritableBytes));
                        }
                    foreach (var c in done) popped.Remove(c);
                    // Chains popped but not used are dropped with the device at the next crash: the log must bring them back.
                    if (crash == Crash.BetweenOperations && dying is not null) throw new CrashException();
                }
                catch (CrashException)
                {
                    lives--;
                    popped.Clear();
                    dev = Restart(rig, q, region, size, options, out log);
                }
                if (dying is not null && !dying.Died && ReferenceEquals(dev.PackedInflight, dying)) dev.PackedInflight = log;

                while (q.Driver.GetUsed(out var token, out uint len) == QueueStatus.Ok)
                {
                    Assert.True(outstanding.Remove(token!, out var info), "a buffer came back twice or was never added");
                    Assert.Equal(info.Len, len);
                    Assert.Equal(0xA5, rig.CpuRead(info.Buf, 1)[0]);
                    completed.Add(token!);
                }
                Assert.False(q.Driver.IsBroken, q.Driver.ErrorDetail);
            }
            // Drain: everything still outstanding completes.
            for (int i = 0; i < 4 && outstanding.Count > 0; i++)
            {
                foreach (var c in popped) { Stamp(rig, c); Assert.Equal(QueueStatus.Ok, dev.AddUsed(c, (uint)c.WritableBytes)); }
                popped.Clear();
                while (dev.Pop(out var c) == QueueStatus.Ok) { Stamp(rig, c!); Assert.Equal(QueueStatus.Ok, dev.AddUsed(c!, (uint)c!.WritableBytes)); }
                Assert.False(dev.IsBroken, dev.ErrorDetail);
                while (q.Driver.GetUsed(out var token, out uint len) == QueueStatus.Ok)
                {
                    Assert.True(outstanding.Remove(token!, out var info), "a buffer came back twice or was never added");
                    Assert.Equal(info.Len, len);
                }
            }
            Assert.Empty(outstanding);
        }
        finally { NativeMemory.Free((void*)region); }
    }

    private static void Stamp(DmaRig rig, DescriptorChain c)
    {
        foreach (var s in c.Writable) Assert.Equal(MemStatus.Ok, rig.Device.Memory.Write(s.Addr, [0xA5]));
    }

    /// <summary>A new device process: a new queue and log over the same ring and region, recovered as the back-end does.</summary>
    private static DeviceQueue<DeviceMemory<TranslatorRef, PortRef>> Restart(DmaRig rig, QueuePair q, nint region, ushort size, QueueOptions options, out PackedInflightQueue log)
    {
        var dev = rig.CreateDevice(q.Driver, options);
        log = new PackedInflightQueue((byte*)region, size);
        Assert.True(log.IsInitialized);
        var (used, wrap, chains) = log.Recover(slot => FlagsAt(dev, slot));
        dev.RestorePacked(used, wrap, chains);
        dev.PackedInflight = log;
        return dev;
    }

    private static ushort? FlagsAt<TMem>(DeviceQueue<TMem> dev, int slot) where TMem : struct, IDeviceMemory =>
        dev.Memory.LoadU16Acquire(dev.Layout.Desc + (ulong)slot * PackedDesc.Size + PackedDesc.FlagsOffset, out ushort f) == MemStatus.Ok ? f : null;

    private static (PackedInflightQueue Log, nint Mem) Region(ushort size)
    {
        nint mem = (nint)NativeMemory.AllocZeroed((nuint)PackedInflightQueue.QueueBytes(size));
        var log = new PackedInflightQueue((byte*)mem, size);
        log.Initialize(0, true);
        return (log, mem);
    }

    [Fact]
    public void LayoutMatchesTheSpecStructures()
    {
        // 29 bytes of header fields padded to the 8-byte alignment of the entries; 32-byte entries; 64-byte queues.
        Assert.Equal(64UL, PackedInflightQueue.QueueBytes(1));
        Assert.Equal(128UL, PackedInflightQueue.QueueBytes(2));
        Assert.Equal(8256UL, PackedInflightQueue.QueueBytes(256));   // 32 + 32 × 256, rounded up to 64
        var (_, mem) = Region(4);
        try
        {
            Assert.Equal(1, *(ushort*)(mem + 8));    // version
            Assert.Equal(4, *(ushort*)(mem + 10));   // desc_num
            Assert.Equal(1, *(byte*)(mem + 20));     // used_wrap_counter starts at 1 (§2.8.1)
            Assert.Equal(1, *(ushort*)(mem + 32 + 2));   // entry 0 links to entry 1
        }
        finally { NativeMemory.Free((void*)mem); }
    }

    [Theory]
    [InlineData(12, 9, "free")]          // free_head past the end marker
    [InlineData(16, 7, "used")]          // used_idx past the ring
    [InlineData(20, 2, "wrap")]          // a wrap counter that is neither 0 nor 1
    public void HeaderOutOfRangeIsRefusedWithAReason(int offset, ushort value, string word)
    {
        var (log, mem) = Region(4);
        try
        {
            if (offset == 20) *(byte*)(mem + offset) = (byte)value; else *(ushort*)(mem + offset) = value;
            var e = Assert.Throws<InvalidDataException>(() => new PackedInflightQueue((byte*)mem, 4).Recover(_ => 0));
            Assert.Contains(word, e.Message);
        }
        finally { NativeMemory.Free((void*)mem); }
    }

    /// <summary>Records one direct chain of <paramref name="descs"/> descriptors in entries 0.. by hand.</summary>
    private static void Forge(nint mem, int head, int num, int last, params (int Entry, ushort Next)[] links)
    {
        byte* e = (byte*)mem + 32 + 32 * head;
        e[0] = 1;
        *(ushort*)(e + 4) = (ushort)last;
        *(ushort*)(e + 6) = (ushort)num;
        foreach (var (entry, next) in links) *(ushort*)((byte*)mem + 32 + 32 * entry + 2) = next;
    }

    [Fact]
    public void ForgedChainsThatLoopOverlapOrOverflowAreRefused()
    {
        var (_, mem) = Region(4);
        try
        {
            *(ushort*)(mem + 12) = *(ushort*)(mem + 14) = 3;   // free list: 3 only
            *(ushort*)(mem + 32 + 32 * 3 + 2) = 4;
            Forge(mem, 0, 3, 2, (0, 1), (1, 0));   // 0 -> 1 -> 0: reaches entry 0 twice
            Assert.Contains("twice", Assert.Throws<InvalidDataException>(() => new PackedInflightQueue((byte*)mem, 4).Recover(_ => 0)).Message);

            Forge(mem, 0, 5, 2, (0, 1), (1, 2));   // more descriptors than the ring has
            Assert.Contains("does not fit", Assert.Throws<InvalidDataException>(() => new PackedInflightQueue((byte*)mem, 4).Recover(_ => 0)).Message);

            Forge(mem, 0, 2, 2, (0, 1));           // ends at 1, claims its last is 2
            Assert.Contains("last", Assert.Throws<InvalidDataException>(() => new PackedInflightQueue((byte*)mem, 4).Recover(_ => 0)).Message);

            Forge(mem, 0, 2, 3, (0, 3));           // runs into the free list
            Assert.Contains("free list", Assert.Throws<InvalidDataException>(() => new PackedInflightQueue((byte*)mem, 4).Recover(_ => 0)).Message);
        }
        finally { NativeMemory.Free((void*)mem); }
    }

    [Fact]
    public void GarbageRegionsNeverEscapeTheRingOrCrash()
    {
        int recovered = 0, refused = 0;
        Gen.Byte.Array[(int)PackedInflightQueue.QueueBytes(5)].Sample(bytes =>
        {
            fixed (byte* p = bytes)
            {
                *(ushort*)(p + 8) = 1;
                *(ushort*)(p + 10) = 5;
                // Mostly in range, so that recovery gets past the header into the entries.
                if (bytes[0] % 4 != 0)
                    for (int off = 12; off <= 18; off += 2) *(ushort*)(p + off) %= 6;
                if (bytes[1] % 4 != 0) { p[20] &= 1; p[21] &= 1; }
                var log = new PackedInflightQueue(p, 5);
                try
                {
                    var (used, _, chains) = log.Recover(_ => 0);
                    Assert.InRange(used, 0, 4);
                    Assert.InRange(chains.Sum(c => c.Descriptors.Length), 0, 5);
                    Assert.All(chains, c => Assert.InRange(c.Entry, 0, 4));
                    // The rewritten region recovers again to the same chains (nothing half-repaired).
                    var again = new PackedInflightQueue(p, 5).Recover(_ => 0);
                    Assert.Equal(chains.Select(c => c.Entry), again.Chains.Select(c => c.Entry));
                    Interlocked.Increment(ref recovered);
                }
                catch (InvalidDataException) { Interlocked.Increment(ref refused); }
            }
        }, iter: 2000);
        // Both paths ran: a generator that only produced refusals would check nothing above.
        Assert.True(recovered > 0 && refused > 0, $"recovered {recovered}, refused {refused}");
    }

    [Fact]
    public void RecoveredGarbageDescriptorsBreakTheQueueInsteadOfReachingMemory()
    {
        using var rig = DmaRig.Create(DmaMode.IommuStrict);
        var options = new QueueOptions { Packed = true };
        using var q = new QueuePair(rig, 4, options);
        // A chain whose descriptor points at an IOVA nothing maps, as a corrupted region would hold.
        var dev = q.Device;
        dev.RestorePacked(0, true, [new RecordedChain(0, 0, [new PackedDesc(0xdead_0000, 64, 0, (ushort)DescFlags.Write)])]);
        Assert.Equal(QueueStatus.Broken, dev.Pop(out _));
        Assert.Equal(QueueError.AddressRefused, dev.Error);
        // More ring slots than the ring has is refused before anything is popped.
        Assert.Throws<ArgumentException>(() => q.Device.RestorePacked(0, true,
            [.. Enumerable.Range(0, 5).Select(i => new RecordedChain((ushort)i, (ulong)i, [new PackedDesc(0, 0, (ushort)i, 0)]))]));
    }

    [Fact]
    public void RestoredPositionsFollowTheLoggedUsedOffsetAndTheSlotsInFlight()
    {
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var q = new QueuePair(rig, 3, new QueueOptions { Packed = true });
        // Used at offset 2 (wrap 1), 2 slots in flight: avail continues at offset 1 of the next lap (wrap 0).
        q.Device.RestorePacked(2, true, [new RecordedChain(0, 0, [new PackedDesc(0, 0, 0, (ushort)DescFlags.Next), new PackedDesc(0, 0, 7, 0)])]);
        Assert.Equal(2, q.Device.NextUsed);
        Assert.True(q.Device.UsedWrapCounter);
        Assert.Equal(1, q.Device.NextAvail);
        Assert.False(q.Device.AvailWrapCounter);
    }
}
