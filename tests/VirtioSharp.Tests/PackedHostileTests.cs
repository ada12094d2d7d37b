using System.Buffers.Binary;
using CsCheck;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.Testing;
using VirtioSharp.Tests.Support;

namespace VirtioSharp.Tests;

/// <summary>
/// A packed device queue facing a driver the test plays by hand: descriptors and event areas written straight into
/// guest memory, every device access logged.
/// </summary>
public sealed class PackedDriverRig : IDisposable
{
    public const ulong DataBytes = 64 * 1024;

    public PackedDriverRig(ushort size = 4, QueueOptions? options = null)
    {
        Platform = new SimPlatform(new SimPlatformOptions { RamSize = 4UL << 20, BouncePoolSize = 0 });
        Device = Platform.Attach("packed-hostile-driver", behindIommu: false);
        Size = size;
        Options = (options ?? new QueueOptions()) with { Packed = true };
        DescGpa = Platform.Allocator.Allocate(PackedRing.DescBytes(size));
        DriverGpa = Platform.Allocator.Allocate(4096);
        DeviceGpa = DriverGpa + 64;
        DataGpa = Platform.Allocator.Allocate(DataBytes);
        Layout = new SplitRingLayout(size, DescGpa, DriverGpa, DeviceGpa, Options.EventIdx, Options.Endian);
        Queue = new(new LoggingMemory<DeviceMemory<TranslatorRef, PortRef>>(Device.Memory, Log), Layout, Options);
    }

    public SimPlatform Platform { get; }
    public SimDevice Device { get; }
    public ushort Size { get; }
    public QueueOptions Options { get; }
    public ulong DescGpa { get; }
    public ulong DriverGpa { get; }
    public ulong DeviceGpa { get; }
    public ulong DataGpa { get; }
    public SplitRingLayout Layout { get; }
    public AccessLog Log { get; } = new();
    public DeviceQueue<LoggingMemory<DeviceMemory<TranslatorRef, PortRef>>> Queue { get; }

    public (ulong Start, ulong End)[] AllowedBusRanges =>
        [(DescGpa, DescGpa + PackedRing.DescBytes(Size)), (DriverGpa, DriverGpa + 4096), (DataGpa, DataGpa + DataBytes)];

    public ulong Data(ulong offset = 0) => DataGpa + offset;

    /// <summary>Flags making a descriptor available under <paramref name="wrap"/>, plus <paramref name="extra"/>.</summary>
    internal static ushort Av(bool wrap, DescFlags extra = DescFlags.None) => (ushort)(PackedRing.AvailBits(wrap) | (ushort)extra);

    private static void Put(Span<byte> b, ulong addr, uint len, ushort id, ushort flags)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(b, addr);
        BinaryPrimitives.WriteUInt32LittleEndian(b[8..], len);
        BinaryPrimitives.WriteUInt16LittleEndian(b[12..], id);
        BinaryPrimitives.WriteUInt16LittleEndian(b[14..], flags);
    }

    public void Desc(int slot, ulong addr, uint len, ushort id, ushort flags)
    {
        Span<byte> b = stackalloc byte[16];
        Put(b, addr, len, id, flags);
        Assert.Equal(MemStatus.Ok, Platform.Ram.Write(DescGpa + (ulong)slot * 16, b));
    }

    public void TableDesc(ulong tableOffset, int index, ulong addr, uint len, ushort flags)
    {
        Span<byte> b = stackalloc byte[16];
        Put(b, addr, len, 0, flags);
        Assert.Equal(MemStatus.Ok, Platform.Ram.Write(DataGpa + tableOffset + (ulong)index * 16, b));
    }

    public void DriverEvent(ushort offWrap, ushort flags)
    {
        Span<byte> b = stackalloc byte[4];
        BinaryPrimitives.WriteUInt16LittleEndian(b, offWrap);
        BinaryPrimitives.WriteUInt16LittleEndian(b[2..], flags);
        Assert.Equal(MemStatus.Ok, Platform.Ram.Write(DriverGpa, b));
    }

    /// <summary>A second device queue on the same rings and log whose reads a racing driver can rewrite.</summary>
    public DeviceQueue<HookedMemory<LoggingMemory<DeviceMemory<TranslatorRef, PortRef>>>> HookedQueue(ReadHook hook) =>
        new(new HookedMemory<LoggingMemory<DeviceMemory<TranslatorRef, PortRef>>>(new(Device.Memory, Log), hook), Layout, Options);

    /// <summary>The descriptor ring slot a device read at <paramref name="addr"/> falls in, or -1.</summary>
    public int SlotOf(ulong addr) => addr >= DescGpa && addr < DescGpa + PackedRing.DescBytes(Size) ? (int)((addr - DescGpa) / PackedDesc.Size) : -1;

    public void AssertPopBreaks(QueueError expected) => AssertPopBreaks(Queue, expected);

    public void AssertPopBreaks<TMem>(DeviceQueue<TMem> queue, QueueError expected) where TMem : struct, IDeviceMemory
    {
        int inFlight = queue.InFlight;
        int writes = Log.Writes.Count();
        Assert.Equal(QueueStatus.Broken, queue.Pop(out var chain));
        Assert.Null(chain);
        Assert.Equal(expected, queue.Error);
        Assert.False(string.IsNullOrEmpty(queue.ErrorDetail));
        Assert.Equal(inFlight, queue.InFlight);
        Assert.Equal(writes, Log.Writes.Count());
        Log.AssertTouchedOnlyWithin(AllowedBusRanges);
        int before = Log.Entries.Count;
        Assert.Equal(QueueStatus.Broken, queue.Pop(out _));
        Assert.False(queue.HasAvailable());
        Assert.Equal(before, Log.Entries.Count);
    }

    public void Dispose() => Platform.Dispose();
}

/// <summary>
/// Packed rings against hostile peers. Device side: a driver flipping AVAIL/USED inconsistently, chains running past the
/// ring with a bad wrap or into slots still in flight, indirect with NEXT, buffer ids reused while outstanding, random
/// garbage. Driver side: used descriptors with ids never made available, twice, or with lengths past the buffer, an
/// IN_ORDER batch past the used idx, and event areas demanding impossible notifications. Each is a clear error (the queue
/// breaks) or a safe default (notify anyway), never a hang or crash.
/// </summary>
public class PackedHostileTests
{
    private const DescFlags N = DescFlags.Next, W = DescFlags.Write, I = DescFlags.Indirect;

    [Fact]
    public void WellFormedChainAcrossTheWrapPops()
    {
        using var rig = new PackedDriverRig(size: 4);
        // Two single-descriptor chains used and returned, so the next chain starts at slot 2 and wraps to slot 0.
        for (int s = 0; s < 2; s++)
        {
            rig.Desc(s, rig.Data(), 8, (ushort)s, PackedDriverRig.Av(true));
            Assert.Equal(QueueStatus.Ok, rig.Queue.Pop(out var c));
            Assert.Equal(QueueStatus.Ok, rig.Queue.AddUsed(c!, 0));
        }
        rig.Desc(3, rig.Data(100), 20, 9, PackedDriverRig.Av(true, N));
        rig.Desc(0, rig.Data(200), 30, 9, PackedDriverRig.Av(false, W));   // after the wrap: wrap counter 0
        rig.Desc(2, rig.Data(0), 10, 9, PackedDriverRig.Av(true, N));      // head last
        Assert.Equal(QueueStatus.Ok, rig.Queue.Pop(out var chain));
        Assert.Equal(9, chain!.Head);
        Assert.Equal(3, chain.RingDescriptors);
        Assert.Equal([new ChainSegment(rig.Data(0), 10, false), new ChainSegment(rig.Data(100), 20, false), new ChainSegment(rig.Data(200), 30, true)],
            chain.Segments.ToArray());
        Assert.False(rig.Queue.AvailWrapCounter);
        Assert.Equal(QueueStatus.Empty, rig.Queue.Pop(out _));
    }

    [Fact]
    public void HeadWithAvailAndUsedBothSetForThisLapBreaks()
    {
        using var rig = new PackedDriverRig();
        rig.Desc(0, rig.Data(), 8, 0, PackedRing.Avail | PackedRing.Used);
        rig.AssertPopBreaks(QueueError.DescriptorFlagsInconsistent);
    }

    [Fact]
    public void HeadLookingAvailableForTheWrongLapIsEmptyNotAChain()
    {
        using var rig = new PackedDriverRig();
        rig.Desc(0, rig.Data(), 8, 0, PackedDriverRig.Av(false));   // AVAIL=0 USED=1: available in lap 0, not lap 1
        Assert.Equal(QueueStatus.Empty, rig.Queue.Pop(out _));
        Assert.False(rig.Queue.HasAvailable());
        Assert.False(rig.Queue.IsBroken);
    }

    [Fact]
    public void ChainRunningPastTheRingWithABadWrapBreaks()
    {
        using var rig = new PackedDriverRig(size: 4);
        for (int s = 0; s < 2; s++)
        {
            rig.Desc(s, rig.Data(), 8, (ushort)s, PackedDriverRig.Av(true));
            Assert.Equal(QueueStatus.Ok, rig.Queue.Pop(out var c));
            Assert.Equal(QueueStatus.Ok, rig.Queue.AddUsed(c!, 0));
        }
        rig.Log.Clear();
        rig.Desc(3, rig.Data(), 8, 5, PackedDriverRig.Av(true, N));
        rig.Desc(0, rig.Data(), 8, 5, PackedDriverRig.Av(true));     // stale wrap: slot 0 after the wrap needs counter 0
        rig.Desc(2, rig.Data(), 8, 5, PackedDriverRig.Av(true, N));
        rig.AssertPopBreaks(QueueError.ChainDescriptorNotAvailable);
    }

    [Fact]
    public void ChainWrappingOntoItsOwnHeadBreaks()
    {
        using var rig = new PackedDriverRig(size: 3);
        for (int s = 0; s < 3; s++) rig.Desc(s, rig.Data(), 8, 1, PackedDriverRig.Av(true, N));
        rig.AssertPopBreaks(QueueError.ChainDescriptorNotAvailable);
    }

    [Fact]
    public void ChainRunningIntoSlotsStillInFlightBreaks()
    {
        using var rig = new PackedDriverRig(size: 4);
        rig.Desc(0, rig.Data(), 8, 0, PackedDriverRig.Av(true));
        rig.Desc(1, rig.Data(), 8, 1, PackedDriverRig.Av(true));
        Assert.Equal(QueueStatus.Ok, rig.Queue.Pop(out _));
        Assert.Equal(QueueStatus.Ok, rig.Queue.Pop(out _));          // slots 0 and 1 in flight
        rig.Desc(3, rig.Data(), 8, 2, PackedDriverRig.Av(true, N));
        rig.Desc(0, rig.Data(), 8, 2, PackedDriverRig.Av(false, N)); // correctly wrapped, but still in flight
        rig.Desc(2, rig.Data(), 8, 2, PackedDriverRig.Av(true, N));
        rig.AssertPopBreaks(QueueError.TooManyInFlight);
    }

    [Theory]
    [InlineData((ushort)(PackedRing.Avail | PackedRing.Used))]   // now says "used in this lap"
    [InlineData((ushort)PackedRing.Used)]                        // now says "available in the other lap"
    public void HeadFlagsFlippedBetweenTheProbeAndTheDescriptorReadBreaks(ushort flipped)
    {
        using var rig = new PackedDriverRig();
        rig.Desc(0, rig.Data(), 8, 0, PackedDriverRig.Av(true));
        // The flags probe sees the head available; the full descriptor read right after sees the driver's rewrite.
        var hook = new ReadHook { AfterRead = (addr, b) => { if (rig.SlotOf(addr) == 0 && b.Length == PackedDesc.Size) BinaryPrimitives.WriteUInt16LittleEndian(b[PackedDesc.FlagsOffset..], flipped); } };
        var q = rig.HookedQueue(hook);
        Assert.True(q.HasAvailable());
        rig.AssertPopBreaks(q, QueueError.DescriptorFlagsInconsistent);
    }

    [Theory]
    [InlineData((ushort)1)]
    [InlineData((ushort)5)]
    public void DriverRemarkingEverySlotAvailableCannotMakeAnEndlessChain(ushort size)
    {
        using var rig = new PackedDriverRig(size);
        rig.Desc(0, rig.Data(), 8, 0, PackedDriverRig.Av(true, N));
        // A racing driver answers every descriptor read with "available for the lap you are in, and NEXT": the chain
        // runs round the ring onto its own head and would never end.
        var reads = new int[size];
        var hook = new ReadHook
        {
            AfterRead = (addr, b) =>
            {
                int slot = rig.SlotOf(addr);
                if (slot < 0 || b.Length != PackedDesc.Size) return;
                bool wrap = ++reads[slot] % 2 == 1;
                BinaryPrimitives.WriteUInt16LittleEndian(b[PackedDesc.FlagsOffset..], PackedDriverRig.Av(wrap, N));
            },
        };
        var q = rig.HookedQueue(hook);
        rig.AssertPopBreaks(q, QueueError.ChainTooLong);
        Assert.Equal(size + 1, reads.Sum());   // stopped at the first descriptor past a full ring
        Assert.Equal(0, q.InFlight);
    }

    [Theory]
    [InlineData((ushort)1)]
    [InlineData((ushort)4)]
    public void EverySlotInFlightAndTheNextMarkedAvailableBreaks(ushort size)
    {
        // Regression: with every slot in flight no chain object was left, and the pop indexed past its pool (a crash).
        using var rig = new PackedDriverRig(size);
        for (int s = 0; s < size; s++) rig.Desc(s, rig.Data(), 8, (ushort)s, PackedDriverRig.Av(true));
        for (int s = 0; s < size; s++) Assert.Equal(QueueStatus.Ok, rig.Queue.Pop(out _));
        rig.Desc(0, rig.Data(), 8, size, PackedDriverRig.Av(false));   // correctly wrapped, but the ring is full
        rig.AssertPopBreaks(QueueError.TooManyInFlight);
        Assert.Equal(size, rig.Queue.InFlight);
    }

    [Fact]
    public void IndirectWithNextBreaks()
    {
        using var rig = new PackedDriverRig(options: new QueueOptions { IndirectDesc = true });
        rig.TableDesc(4096, 0, rig.Data(), 8, 0);
        rig.Desc(1, rig.Data(), 8, 0, PackedDriverRig.Av(true));
        rig.Desc(0, rig.Data(4096), 16, 0, PackedDriverRig.Av(true, I | N));
        rig.AssertPopBreaks(QueueError.IndirectWithNext);
    }

    [Fact]
    public void IndirectAfterADirectDescriptorBreaks()
    {
        using var rig = new PackedDriverRig(options: new QueueOptions { IndirectDesc = true });
        rig.TableDesc(4096, 0, rig.Data(), 8, 0);
        rig.Desc(1, rig.Data(4096), 16, 0, PackedDriverRig.Av(true, I));
        rig.Desc(0, rig.Data(), 8, 0, PackedDriverRig.Av(true, N));
        rig.AssertPopBreaks(QueueError.IndirectNotAtHead);
    }

    [Fact]
    public void IndirectTableIgnoresReservedFlagsAndIds()
    {
        using var rig = new PackedDriverRig(options: new QueueOptions { IndirectDesc = true });
        rig.TableDesc(4096, 0, rig.Data(), 8, (ushort)(N | I));        // reserved in a table (§2.8.19): ignored
        rig.TableDesc(4096, 1, rig.Data(64), 16, (ushort)W);
        rig.Desc(0, rig.Data(4096), 32, 3, PackedDriverRig.Av(true, I));
        Assert.Equal(QueueStatus.Ok, rig.Queue.Pop(out var c));
        Assert.Equal(3, c!.Head);
        Assert.Equal([new ChainSegment(rig.Data(), 8, false), new ChainSegment(rig.Data(64), 16, true)], c.Segments.ToArray());
    }

    [Fact]
    public void IndirectBadLengthBreaks()
    {
        using var rig = new PackedDriverRig(options: new QueueOptions { IndirectDesc = true });
        rig.Desc(0, rig.Data(4096), 24, 0, PackedDriverRig.Av(true, I));
        rig.AssertPopBreaks(QueueError.IndirectBadLength);
    }

    [Fact]
    public void BufferIdReusedWhileOutstandingBreaks()
    {
        using var rig = new PackedDriverRig();
        rig.Desc(0, rig.Data(), 8, 7, PackedDriverRig.Av(true));
        Assert.Equal(QueueStatus.Ok, rig.Queue.Pop(out _));
        rig.Desc(1, rig.Data(), 8, 7, PackedDriverRig.Av(true));
        rig.AssertPopBreaks(QueueError.BufferIdInUse);
    }

    [Fact]
    public void BufferIdReusedByAChainsLastDescriptorOrAnIndirectHeadBreaks()
    {
        // The id that counts is the last descriptor's (§2.8.6) or the indirect descriptor's: a chain whose head carries
        // a fresh id but whose last descriptor repeats one in flight is a reuse, and so is an indirect head.
        using var rig = new PackedDriverRig(size: 8, new QueueOptions { IndirectDesc = true });
        rig.TableDesc(4096, 0, rig.Data(), 8, 0);
        rig.Desc(0, rig.Data(4096), 16, 3, PackedDriverRig.Av(true, I));
        Assert.Equal(QueueStatus.Ok, rig.Queue.Pop(out var first));
        Assert.Equal(3, first!.Head);
        rig.Desc(1, rig.Data(), 8, 5, PackedDriverRig.Av(true, N));
        rig.Desc(2, rig.Data(), 8, 3, PackedDriverRig.Av(true));
        rig.AssertPopBreaks(QueueError.BufferIdInUse);

        using var rig2 = new PackedDriverRig(size: 8, new QueueOptions { IndirectDesc = true });
        rig2.Desc(0, rig2.Data(), 8, 1, PackedDriverRig.Av(true, N));
        rig2.Desc(1, rig2.Data(), 8, 6, PackedDriverRig.Av(true));
        Assert.Equal(QueueStatus.Ok, rig2.Queue.Pop(out var chain));
        Assert.Equal(6, chain!.Head);
        rig2.TableDesc(4096, 0, rig2.Data(), 8, 0);
        rig2.Desc(2, rig2.Data(4096), 16, 6, PackedDriverRig.Av(true, I));
        rig2.AssertPopBreaks(QueueError.BufferIdInUse);
    }

    [Fact]
    public void BufferIdMayBeReusedOnceUsed()
    {
        using var rig = new PackedDriverRig(size: 3);
        for (int i = 0; i < 7; i++)   // two laps and a bit, always id 2
        {
            rig.Desc(i % 3, rig.Data(), 8, 2, PackedDriverRig.Av(i / 3 % 2 == 0));
            Assert.Equal(QueueStatus.Ok, rig.Queue.Pop(out var c));
            Assert.Equal(2, c!.Head);
            Assert.Equal(QueueStatus.Ok, rig.Queue.AddUsed(c, 0));
        }
        Assert.False(rig.Queue.IsBroken);
    }

    [Fact]
    public void ReadableAfterWritableBreaks()
    {
        using var rig = new PackedDriverRig();
        rig.Desc(1, rig.Data(), 8, 0, PackedDriverRig.Av(true));
        rig.Desc(0, rig.Data(), 8, 0, PackedDriverRig.Av(true, W | N));
        rig.AssertPopBreaks(QueueError.ReadableAfterWritable);
    }

    [Fact]
    public void BufferOutsideMemoryBreaks()
    {
        using var rig = new PackedDriverRig();
        rig.Desc(0, 1UL << 40, 8, 0, PackedDriverRig.Av(true));
        rig.AssertPopBreaks(QueueError.AddressRefused);
    }

    [Theory]
    [InlineData((ushort)3, (ushort)0)]        // reserved flags value
    [InlineData((ushort)2, (ushort)0x7FFF)]   // DESC at an offset past the ring
    [InlineData((ushort)2, (ushort)0x8001)]   // DESC without EVENT_IDX negotiated
    public void DriverEventAreaDemandingImpossibleInterruptsGetsInterrupts(ushort flags, ushort offWrap)
    {
        using var rig = new PackedDriverRig(options: new QueueOptions { EventIdx = offWrap != 0x8001 });
        rig.DriverEvent(offWrap, flags);
        for (int i = 0; i < 6; i++)
        {
            rig.Desc(i % 4, rig.Data(), 8, 0, PackedDriverRig.Av(i < 4));
            Assert.Equal(QueueStatus.Ok, rig.Queue.Pop(out var c));
            Assert.Equal(QueueStatus.Ok, rig.Queue.AddUsed(c!, 0));
            Assert.True(rig.Queue.NeedsInterrupt());
        }
        rig.DriverEvent(0, PackedRing.EventDisable);
        rig.Desc(2, rig.Data(), 8, 0, PackedDriverRig.Av(false));
        Assert.Equal(QueueStatus.Ok, rig.Queue.Pop(out var last));
        Assert.Equal(QueueStatus.Ok, rig.Queue.AddUsed(last!, 0));
        Assert.False(rig.Queue.NeedsInterrupt());
    }

    public sealed record RawDesc(int Offset, int Len, ushort Id, ushort Flags);

    private static readonly Gen<RawDesc> GenDesc = Gen.Select(
        Gen.Int[0, 16], Gen.OneOf<int>(Gen.Int[0, 64], Gen.Int[0, 4096]), Gen.UShort[0, 9],
        Gen.OneOf<ushort>(Gen.UShort, Gen.Select(Gen.Int[0, 7], Gen.Bool, Gen.Bool, (f, a, u) => (ushort)(f | (a ? 0x80 : 0) | (u ? 0x8000 : 0))),
            Gen.Int[0, 7].Select(f => (ushort)(f | PackedRing.Avail))),   // available in lap 1, so chains pop too
        (o, l, id, f) => new RawDesc(o * 256, l, id, f));

    // Errors a packed ring can raise while popping; split-only ones (avail idx, next links, loops, nesting) cannot occur.
    private static readonly QueueError[] PackedPopErrors =
    [
        QueueError.DescriptorFlagsInconsistent, QueueError.ChainDescriptorNotAvailable, QueueError.BufferIdInUse,
        QueueError.TooManyInFlight, QueueError.ChainTooLong, QueueError.IndirectWithNext, QueueError.IndirectNotAtHead,
        QueueError.IndirectBadLength, QueueError.ReadableAfterWritable, QueueError.AddressRefused,
    ];

    [Fact]
    public void PopOnGarbagePackedRingsIsBoundedConfinedAndSticky()
    {
        int broken = 0, popped = 0;
        Gen.Select(GenDesc.Array[8], Gen.Bool, Gen.Int[1, 8], (d, ind, sz) => (d, ind, sz)).Sample(g =>
        {
            using var rig = new PackedDriverRig((ushort)g.sz, new QueueOptions { IndirectDesc = g.ind, MaxChainLength = 16 });
            for (int i = 0; i < g.sz; i++) rig.Desc(i, rig.Data((ulong)g.d[i].Offset), (uint)g.d[i].Len, g.d[i].Id, g.d[i].Flags);
            for (int i = 0; i < 8; i++) rig.TableDesc(8192, i, rig.Data((ulong)g.d[i].Offset), (uint)g.d[i].Len, g.d[i].Flags);
            int pops = 0;
            while (true)
            {
                var st = rig.Queue.Pop(out var c);
                Assert.True(++pops <= g.sz + 1, "more chains than ring slots");
                if (st == QueueStatus.Broken)
                {
                    Assert.Contains(rig.Queue.Error, PackedPopErrors);
                    Assert.False(string.IsNullOrEmpty(rig.Queue.ErrorDetail));
                    var err = rig.Queue.Error;
                    int entries = rig.Log.Entries.Count;
                    Assert.Equal(QueueStatus.Broken, rig.Queue.Pop(out _));   // sticky, without touching memory
                    Assert.Equal(err, rig.Queue.Error);
                    Assert.Equal(entries, rig.Log.Entries.Count);
                    Interlocked.Increment(ref broken);
                    break;
                }
                if (st != QueueStatus.Ok) { Assert.Equal(QueueStatus.Empty, st); break; }
                Interlocked.Increment(ref popped);
                Assert.InRange(c!.Count, 1, 16);
                bool w = false;
                foreach (var seg in c.Segments)
                {
                    Assert.False(w && !seg.Writable);
                    w |= seg.Writable;
                    Assert.True(seg.Length == 0 || seg.Addr >= rig.Data() && seg.Addr + seg.Length <= rig.Data(PackedDriverRig.DataBytes));
                }
                Assert.Equal(QueueStatus.Ok, rig.Queue.AddUsed(c, 0));
            }
            // The device wrote only used descriptors into the ring, and read nothing outside it, the event area and the data.
            Assert.All(rig.Log.Writes, x => Assert.InRange(rig.SlotOf(x.Addr), 0, g.sz - 1));
            rig.Log.AssertTouchedOnlyWithin(rig.AllowedBusRanges);
            Assert.True(rig.Log.Entries.Count < 64 * 16, "unbounded accesses");
        }, iter: 2000);
        // Both outcomes were reached often, so the assertions on each ran.
        Assert.True(broken > 200 && popped > 200, $"{broken} broken, {popped} popped");
    }
}

/// <summary>The packed driver side fed a hostile device: used descriptors written straight into the ring.</summary>
public class PackedDriverHostileDeviceTests
{
    private static QueuePair Make(DmaRig rig, QueueOptions? o = null, ushort size = 4) =>
        new(rig, size, (o ?? new QueueOptions()) with { Packed = true });

    private static void AssertBroken(QueuePair q, QueueError expected, long mappings, int outstanding)
    {
        Assert.Equal(QueueStatus.Broken, q.Driver.GetUsed(out var token, out uint len));
        Assert.Null(token);
        Assert.Equal(0u, len);
        Assert.Equal(expected, q.Driver.Error);
        Assert.False(string.IsNullOrEmpty(q.Driver.ErrorDetail));
        Assert.Equal(mappings, q.Rig.Ops.Stats.Outstanding);
        Assert.Equal(outstanding, q.Driver.Outstanding);
        Assert.Equal(QueueStatus.Broken, q.Driver.GetUsed(out _, out _));
        Assert.False(q.Driver.HasUsed);
        Assert.Equal(QueueStatus.Broken, q.Add([16], [], out _, out _));
        // Reset recovers and unmaps everything.
        Assert.Equal(outstanding, q.Driver.DetachUnused().Count);
        Assert.False(q.Driver.IsBroken);
        Assert.Equal(0, q.Rig.Ops.Stats.Outstanding);
    }

    [Fact]
    public void UsedIdOutOfRangeBreaks()
    {
        using var rig = DmaRig.Create(DmaMode.IommuStrict);
        using var q = Make(rig);
        q.AddOk([32], [64]);
        q.WritePackedUsed(0, id: 4, len: 0);
        AssertBroken(q, QueueError.UsedIdOutOfRange, 2, 1);
    }

    [Fact]
    public void UsedIdNeverMadeAvailableBreaks()
    {
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var q = Make(rig);
        q.AddOk([32], [64]);     // id 0
        q.WritePackedUsed(0, id: 2, len: 0);
        AssertBroken(q, QueueError.UsedIdNotOutstanding, 2, 1);
    }

    [Fact]
    public void UsedIdReturnedTwiceBreaks()
    {
        using var rig = DmaRig.Create(DmaMode.Bounce);
        using var q = Make(rig);
        var first = q.AddOk([32], [64]);
        q.AddOk([16], []);
        Assert.Equal(QueueStatus.Ok, q.Device.Pop(out var c));
        Assert.Equal(QueueStatus.Ok, q.Device.AddUsed(c!, 10));
        Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out var token, out uint len));
        Assert.Same(first, token);
        Assert.Equal(10u, len);
        q.WritePackedUsed(2, id: c!.Head, len: 0);   // the next used slot follows the first chain's two slots
        AssertBroken(q, QueueError.UsedIdNotOutstanding, 1, 1);
    }

    [Fact]
    public void UsedLengthLargerThanTheBufferBreaks()
    {
        using var rig = DmaRig.Create(DmaMode.NonCoherent);
        using var q = Make(rig);
        q.AddOk([32], [64, 64]);
        q.WritePackedUsed(0, id: 0, len: 129);
        AssertBroken(q, QueueError.UsedLengthTooLarge, 3, 1);
    }

    [Fact]
    public void UsedDescriptorForThePreviousLapIsNotSeen()
    {
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var q = Make(rig);
        q.AddOk([32], []);
        q.WritePackedUsed(0, id: 0, len: 0, wrap: false);   // AVAIL=USED=0: a used descriptor of lap 0, not lap 1
        Assert.False(q.Driver.HasUsed);
        Assert.Equal(QueueStatus.Empty, q.Driver.GetUsed(out _, out _));
        Assert.False(q.Driver.IsBroken);
    }

    [Fact]
    public void InOrderBatchCompletesEveryEarlierBufferInFull()
    {
        using var rig = DmaRig.Create(DmaMode.IommuLazy);
        using var q = Make(rig, new QueueOptions { InOrder = true }, size: 8);
        var a = q.AddOk([8], [40]);
        var b = q.AddOk([8], [50]);
        var c = q.AddOk([8], [60]);          // ids 0, 1, 2 at slots 0-1, 2-3, 4-5
        q.WritePackedUsed(0, id: 2, len: 7);      // one used descriptor for the batch, naming its last buffer
        Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out var t1, out uint l1));
        Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out var t2, out uint l2));
        Assert.True(q.Driver.HasUsed);
        Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out var t3, out uint l3));
        Assert.Equal([a, b, c], new[] { t1, t2, t3 });
        Assert.Equal([40u, 50u, 7u], new[] { l1, l2, l3 });
        Assert.Equal(QueueStatus.Empty, q.Driver.GetUsed(out _, out _));
        Assert.Equal(8, q.Driver.FreeDescriptors);
        // The next used descriptor is expected after the batch's six slots.
        var d = q.AddOk([8], []);
        q.WritePackedUsed(6, id: 2, len: 0);      // ids come back to a LIFO free list: 2 was freed last
        Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out var t4, out _));
        Assert.Same(d, t4);
    }

    [Theory]
    [InlineData((ushort)0)]   // already returned
    [InlineData((ushort)5)]   // never made available
    public void InOrderBatchNamingABufferNotOutstandingHandsOutNothing(ushort id)
    {
        using var rig = DmaRig.Create(DmaMode.IommuStrict);
        using var q = Make(rig, new QueueOptions { InOrder = true }, size: 8);
        var a = q.AddOk([8], [40]);
        q.AddOk([8], [50]);
        q.AddOk([8], [60]);                  // ids 0, 1, 2 at slots 0-1, 2-3, 4-5
        q.WritePackedUsed(0, id: 0, len: 40);
        Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out var t, out _));
        Assert.Same(a, t);
        // A batch element must name an outstanding buffer; the two still outstanding are not handed out on its say-so.
        q.WritePackedUsed(2, id, len: 0);
        AssertBroken(q, QueueError.UsedIdNotOutstanding, 4, 2);
    }

    [Fact]
    public void SplitInOrderBatchPastTheUsedIndexBreaks()
    {
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var q = new QueuePair(rig, 8, new QueueOptions { InOrder = true });
        q.AddOk([8], [8]);
        q.AddOk([8], [8]);
        q.AddOk([8], [8]);
        q.WriteUsedElem(0, id: 4, len: 1);   // heads 0, 2, 4 (sequential descriptors): names the third buffer...
        q.WriteUsedIdx(2);                   // ...but used idx moved by two
        Assert.Equal(QueueStatus.Broken, q.Driver.GetUsed(out _, out _));
        Assert.Equal(QueueError.UsedBatchPastIndex, q.Driver.Error);
        Assert.Equal(6, rig.Ops.Stats.Outstanding);
    }

    [Theory]
    [InlineData((ushort)3, (ushort)0, true)]        // reserved flags value
    [InlineData((ushort)2, (ushort)0x7FFF, true)]   // DESC at an offset past the ring
    [InlineData((ushort)2, (ushort)0x8003, false)]  // DESC without EVENT_IDX negotiated
    public void DeviceEventAreaDemandingImpossibleNotificationsGetsKicks(ushort flags, ushort offWrap, bool eventIdx)
    {
        using var rig = DmaRig.Create(DmaMode.Direct);
        using var q = Make(rig, new QueueOptions { EventIdx = eventIdx });
        q.WriteDeviceEvent(offWrap, flags);
        for (int i = 0; i < 9; i++)
        {
            q.AddOk([8], []);
            Assert.True(q.Driver.KickPrepare());
            Assert.Equal(QueueStatus.Ok, q.Device.Pop(out var c));
            q.WriteDeviceEvent(offWrap, flags);     // the device model's own writes are overridden by the hostile ones
            Assert.Equal(QueueStatus.Ok, q.Device.AddUsed(c!, 0));
            Assert.Equal(QueueStatus.Ok, q.Driver.GetUsed(out _, out _));
        }
        q.WriteDeviceEvent(0, PackedRing.EventDisable);
        q.AddOk([8], []);
        Assert.False(q.Driver.KickPrepare());
    }
}
