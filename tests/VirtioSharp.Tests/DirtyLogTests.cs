using System.Runtime.InteropServices;
using VirtioSharp.Dma;
using VirtioSharp.Memory;
using VirtioSharp.Queues;

namespace VirtioSharp.Tests;

/// <summary>
/// Dirty-page logging (vhost-user.rst "Migration"): one bit per 4 KiB guest-physical page, set by the address space for
/// every device write — payloads, used ring entries and idx, packed descriptors — and by the queue for buffers written
/// by zero-copy I/O, before the used entry; nothing while logging is off; never outside the bitmap.
/// </summary>
public sealed unsafe class DirtyLogTests : IDisposable
{
    private const int Page = 4096;
    private readonly byte* _mapping = (byte*)NativeMemory.AlignedAlloc(Page, Page);

    public DirtyLogTests() => new Span<byte>(_mapping, Page).Clear();

    public void Dispose() => NativeMemory.AlignedFree(_mapping);

    /// <summary>A log of <paramref name="bytes"/> at <paramref name="offset"/> into a zeroed page-aligned mapping.</summary>
    private DirtyLog Log(ulong bytes = 32, int offset = 0, bool enabled = true)
    {
        var log = new DirtyLog { Enabled = enabled };
        log.Attach((nint)(_mapping + offset), bytes);
        return log;
    }

    /// <summary>The pages whose bits are set in a log at <paramref name="offset"/>, by the spec's layout: bit page % 8 of byte page / 8.</summary>
    private List<ulong> Dirty(int offset = 0, int bytes = 32)
    {
        var pages = new List<ulong>();
        for (int i = 0; i < bytes; i++)
            for (int b = 0; b < 8; b++)
                if ((_mapping[offset + i] & (1 << b)) != 0) pages.Add((ulong)(i * 8 + b));
        return pages;
    }

    private static ulong PageOf(ulong gpa) => gpa / Page;

    [Fact]
    public void AWriteSetsTheBitOfItsPageInTheSpecLayout()
    {
        var log = Log();
        log.Mark(0x5123, 1);
        Assert.Equal(0x20, _mapping[0]);                  // page 5: byte 0, bit 5
        log.Mark(0x11000, 8);
        Assert.Equal(0x02, _mapping[2]);                  // page 17: byte 2, bit 1
        Assert.Equal([5UL, 17UL], Dirty());
        Assert.Equal(2, log.PagesMarked);
        log.Mark(0x5000, 4096);                           // already dirty: not counted again
        Assert.Equal(2, log.PagesMarked);
    }

    [Fact]
    public void AWriteCrossingAPageBoundarySetsBothPages()
    {
        var log = Log();
        log.Mark(0x1FFF, 2);
        Assert.Equal([1UL, 2UL], Dirty());
        log.Mark(0x8000, 3 * Page + 1);
        Assert.Equal([1UL, 2UL, 8UL, 9UL, 10UL, 11UL], Dirty());
    }

    [Fact]
    public void ALogAtAnUnalignedOffsetIsWrittenAtThatOffsetOnly()
    {
        var log = Log(bytes: 4, offset: 3);
        log.Mark(0, 1);
        log.Mark(31 * Page, 1);
        Assert.Equal(0x01, _mapping[3]);
        Assert.Equal(0x80, _mapping[6]);
        Assert.Equal(2, new Span<byte>(_mapping, Page).ToArray().Count(b => b != 0));
    }

    [Fact]
    public void NothingIsMarkedWhileLoggingIsOffOrWithoutABitmap()
    {
        var log = Log(enabled: false);
        log.Mark(0x5000, Page);
        Assert.False(log.Active);
        Assert.Empty(Dirty());
        var none = new DirtyLog { Enabled = true };
        Assert.False(none.Active);
        none.Mark(0x5000, Page);                          // no bitmap: nothing to touch
        log.Enabled = true;
        Assert.True(log.Active);
        log.Detach();
        Assert.False(log.Active);
        log.Mark(0x5000, Page);
        Assert.Empty(Dirty());
    }

    [Fact]
    public void AddressesBeyondTheLogAreCountedAndNeverWritten()
    {
        var log = Log(bytes: 2);                          // pages 0..15
        log.Mark(15 * Page, 2 * Page);                    // page 15 in, page 16 out
        log.Mark(1UL << 40, 5 * Page);
        log.Mark(ulong.MaxValue - 10, 11);                // the last page of the address space
        log.Mark(ulong.MaxValue - 10, 100);               // wraps: no crash, counted up to the top
        Assert.Equal([15UL], Dirty(bytes: 2));
        Assert.True(new Span<byte>(_mapping + 2, Page - 2).IndexOfAnyExcept((byte)0) < 0, "a byte past the log was written");
        Assert.Equal(1 + 5 + 1 + 1, log.OutOfRange);
        Assert.Equal(1, log.PagesMarked);
    }

    [Fact]
    public void ConcurrentMarksOfPagesSharingAWordAllLand()
    {
        var log = Log(bytes: 8);                          // one 64-bit word, 64 pages
        var threads = Enumerable.Range(0, 4).Select(t => new Thread(() =>
        {
            for (int round = 0; round < 2000; round++)
                for (int p = t; p < 64; p += 4) log.Mark((ulong)p * Page, 1);
        })).ToList();
        threads.ForEach(t => t.Start());
        threads.ForEach(t => t.Join());
        Assert.Equal(ulong.MaxValue, *(ulong*)_mapping);
        Assert.Equal(64, log.PagesMarked);
    }

    // ---- through the address space and the queues ----

    private static (PlainDmaPlatform Plat, DriverQueue Driver, DeviceQueue<DeviceMemory<IdentityTranslate, RamPort>> Device) Queues(DirtyLog? log, QueueOptions opts)
    {
        var plat = PlainDmaPlatform.Create(1 << 20);
        var driver = new DriverQueue(new DirectDmaOps(plat), plat.Ram, 16, opts);
        var device = new DeviceQueue<DeviceMemory<IdentityTranslate, RamPort>>(new(default, new RamPort(plat.Ram, log)), driver.DeviceLayout, opts);
        return (plat, driver, device);
    }

    private static IEnumerable<ulong> Pages(ulong gpa, ulong len) => Enumerable.Range(0, (int)(PageOf(gpa + len - 1) - PageOf(gpa) + 1)).Select(i => PageOf(gpa) + (ulong)i);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ADeviceWriteThroughChainWriterMarksThePayloadAndTheUsedEntryOnly(bool packed)
    {
        var log = Log();
        var opts = new QueueOptions { Packed = packed };
        var (plat, driver, device) = Queues(log, opts);
        using var ram = plat.Ram;
        ulong rd = plat.Allocator.Allocate(Page), wr = plat.Allocator.Allocate(2 * Page);
        // The writable buffer straddles a page boundary; the readable one must stay clean.
        Assert.Equal(QueueStatus.Ok, driver.Add([new BufferSegment(rd, 64)], [new BufferSegment(wr + Page - 8, 16)], new object(), out _));
        Assert.Equal(QueueStatus.Ok, device.Pop(out var chain));
        Assert.Empty(Dirty());                            // reading the rings dirties nothing
        var w = new ChainWriter<DeviceMemory<IdentityTranslate, RamPort>>(device.Memory, chain!);
        Assert.Equal(MemStatus.Ok, w.Write(new byte[16], out _));
        Assert.Equal([PageOf(wr), PageOf(wr) + 1], Dirty());
        Assert.Equal(QueueStatus.Ok, device.AddUsed(chain!, 16));
        var layout = driver.DeviceLayout;
        var expected = new SortedSet<ulong> { PageOf(wr), PageOf(wr) + 1 };
        if (packed) expected.Add(PageOf(layout.Desc));    // the used descriptor is written over the first slot
        else { expected.Add(PageOf(layout.UsedRingAddr(0))); expected.Add(PageOf(layout.UsedIdxAddr)); }
        Assert.Equal(expected.ToList(), Dirty());
        Assert.DoesNotContain(PageOf(rd), Dirty());
        Assert.Equal(QueueStatus.Ok, driver.GetUsed(out _, out uint len));
        Assert.Equal(16u, len);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ZeroCopyIoIsMarkedWhenTheChainIsUsedNotWhenItIsMapped(bool packed)
    {
        var log = Log();
        var (plat, driver, device) = Queues(log, new QueueOptions { Packed = packed });
        using var ram = plat.Ram;
        ulong wr = plat.Allocator.Allocate(4 * Page);
        Assert.Equal(QueueStatus.Ok, driver.Add([], [new BufferSegment(wr, 3 * Page)], new object(), out _));
        Assert.Equal(QueueStatus.Ok, device.Pop(out var chain));
        var seg = chain!.Writable[0];
        Assert.Equal(MemStatus.Ok, device.Memory.MapForIo(seg.Addr, seg.Length, Access.Write, out nint host, out ulong n));
        new Span<byte>((void*)host, (int)n).Fill(0xAB);   // storage writes behind the address space's back
        Assert.Empty(Dirty());                            // a mapping marks nothing: the front-end could clear it before the data lands
        Assert.Equal(QueueStatus.Ok, device.AddUsed(chain, (uint)n));
        Assert.True(Pages(wr, 3 * Page).All(Dirty().Contains), $"dirty {string.Join(',', Dirty())}");
    }

    [Fact]
    public void WithLoggingOffNoDeviceWriteSetsABit()
    {
        var log = Log(enabled: false);
        var (plat, driver, device) = Queues(log, new QueueOptions());
        using var ram = plat.Ram;
        ulong wr = plat.Allocator.Allocate(Page);
        Assert.Equal(QueueStatus.Ok, driver.Add([], [new BufferSegment(wr, 64)], new object(), out _));
        Assert.Equal(QueueStatus.Ok, device.Pop(out var chain));
        Assert.False(device.Memory.LogsWrites);
        var w = new ChainWriter<DeviceMemory<IdentityTranslate, RamPort>>(device.Memory, chain!);
        Assert.Equal(MemStatus.Ok, w.Write(new byte[64], out _));
        Assert.Equal(QueueStatus.Ok, device.AddUsed(chain!, 64));
        Assert.Empty(Dirty());
        Assert.Equal(0, log.PagesMarked);
    }

    /// <summary>IOVA = GPA + 1 TiB: what a vIOMMU's IOTLB would say, for one window.</summary>
    private sealed class OffsetTranslator : IAddressTranslator
    {
        public const ulong Offset = 1UL << 40;
        public MemStatus Translate(ulong addr, Access access, out ulong gpa, out ulong contiguous)
        {
            gpa = addr - Offset;
            contiguous = Page - (addr % Page);            // one page at a time, like IOTLB entries
            return addr >= Offset && gpa < (1 << 20) ? MemStatus.Ok : MemStatus.TranslationFault;
        }
    }

    [Fact]
    public void UnderAnIommuTheGuestPhysicalPageIsMarkedNotTheIova()
    {
        var log = Log();
        using var ram = GuestMemory.Create(1 << 20);
        var mem = new DeviceMemory<TranslatorRef, RamPort>(new TranslatorRef(new OffsetTranslator()), new RamPort(ram, log));
        Assert.Equal(MemStatus.Ok, mem.Write(OffsetTranslator.Offset + 0x3FFC, new byte[8]));
        Assert.Equal([3UL, 4UL], Dirty());
        Assert.Equal(MemStatus.Ok, mem.StoreU16Release(OffsetTranslator.Offset + 0x9000, 1));
        Assert.Equal(MemStatus.Ok, mem.MarkWritten(OffsetTranslator.Offset + 0x20000, 2 * Page));
        Assert.Equal([3UL, 4UL, 9UL, 0x20UL, 0x21UL], Dirty());
        // An IOVA that no longer translates marks nothing and says so.
        Assert.Equal(MemStatus.TranslationFault, mem.MarkWritten(0x5000, 16));
        Assert.Equal(0, log.OutOfRange);
    }
}
