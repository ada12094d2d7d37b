using VirtioSharp.Memory;

namespace VirtioSharp.Tests;

/// <summary>Guest-physical memory regions, the identity device view over them, and the guest page allocator.</summary>
public class GuestMemoryTests
{
    private static byte[] Pattern(int len, byte seed) => Enumerable.Range(0, len).Select(i => (byte)(i * 31 + seed)).ToArray();

    [Theory]
    [InlineData(0x1000UL, 0x2000UL, 0x2000UL, 0x1000UL)]   // second starts inside the first
    [InlineData(0x2000UL, 0x1000UL, 0x1000UL, 0x4000UL)]   // second encloses the first
    [InlineData(0x1000UL, 0x1000UL, 0x1000UL, 0x1000UL)]   // identical
    public void OverlappingRegionsAreRejected(ulong gpaA, ulong sizeA, ulong gpaB, ulong sizeB)
    {
        using var a = new GuestRegion(gpaA, sizeA, "a");
        using var b = new GuestRegion(gpaB, sizeB, "b");
        var ex = Assert.Throws<ArgumentException>(() => new GuestMemory(a, b));
        Assert.Contains("overlap", ex.Message);
    }

    [Fact]
    public void AccessSpanningTwoAdjacentRegionsWorks()
    {
        using var mem = new GuestMemory(new GuestRegion(0x2000, 0x1000, "high"), new GuestRegion(0x1000, 0x1000, "low"));
        var data = Pattern(64, 1);
        Assert.Equal(MemStatus.Ok, mem.Write(0x2000 - 32, data));
        var back = new byte[64];
        Assert.Equal(MemStatus.Ok, mem.Read(0x2000 - 32, back));
        Assert.Equal(data, back);
        // Each half landed in its own region.
        Assert.Equal(data[..32], mem.Regions[0].AsSpan(0x1000 - 32, 32).ToArray());
        Assert.Equal(data[32..], mem.Regions[1].AsSpan(0, 32).ToArray());
        Assert.True(mem.IsBacked(0x1000, 0x2000));

        var dev = DeviceMemory.Identity(mem);
        Array.Clear(back);
        Assert.Equal(MemStatus.Ok, dev.Read(0x2000 - 32, back));
        Assert.Equal(data, back);
        Assert.Equal(MemStatus.Ok, mem.Copy(0x1000, 0x2000 - 32, 64));
        Assert.Equal(data, mem.Regions[0].AsSpan(0, 64).ToArray());
    }

    [Fact]
    public void AccessPastTheEndOrIntoAGapIsUnmapped()
    {
        using var mem = new GuestMemory(new GuestRegion(0, 0x1000), new GuestRegion(0x3000, 0x1000, "far"));
        Assert.Equal(MemStatus.Unmapped, mem.Read(0x4000 - 2, new byte[4]));
        Assert.Equal(MemStatus.Unmapped, mem.Read(0x1000 - 2, new byte[4]));   // runs into the gap
        Assert.Equal(MemStatus.Unmapped, mem.Read(0x2000, new byte[1]));
        Assert.False(mem.IsBacked(0x800, 0x1000));
        var dev = DeviceMemory.Identity(mem);
        Assert.Equal(MemStatus.Unmapped, dev.Check(0x3f00, 0x200, Access.Read));
        // A device write that would run off the end writes nothing at all.
        mem.Write(0x4000 - 8, Pattern(8, 2));
        Assert.Equal(MemStatus.Unmapped, dev.Write(0x4000 - 8, new byte[16]));
        var back = new byte[8];
        mem.Read(0x4000 - 8, back);
        Assert.Equal(Pattern(8, 2), back);
    }

    [Fact]
    public void RangesThatWrapTheAddressSpaceOverflow()
    {
        using var mem = GuestMemory.Create(0x1000);
        Assert.Equal(MemStatus.Overflow, mem.Read(ulong.MaxValue - 1, new byte[4]));
        Assert.Equal(MemStatus.Overflow, mem.Write(ulong.MaxValue - 1, new byte[4]));
        Assert.Equal(MemStatus.Overflow, mem.Fill(ulong.MaxValue, 2, 0));
        Assert.Equal(MemStatus.Overflow, mem.Copy(0, ulong.MaxValue, 2));
        Assert.False(mem.IsBacked(ulong.MaxValue, 2));
        var dev = DeviceMemory.Identity(mem);
        Assert.Equal(MemStatus.Overflow, dev.Read(ulong.MaxValue - 1, new byte[4]));
        Assert.Equal(MemStatus.Overflow, dev.Check(ulong.MaxValue - 1, 4, Access.Read));
        Assert.Equal(MemStatus.Overflow, new RamPort(mem).Check(ulong.MaxValue, 2, Access.Read));
    }

    [Fact]
    public void RegionsRejectBadShapes()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new GuestRegion(0, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => new GuestRegion(ulong.MaxValue - 1, 4));
        Assert.Throws<ArgumentException>(() => new GuestRegion(1, 4));
        Assert.Throws<ArgumentException>(() => new GuestMemory());
    }

    [Fact]
    public void MisalignedIndexAccessIsRefused()
    {
        using var mem = GuestMemory.Create(0x1000);
        var dev = DeviceMemory.Identity(mem);
        Assert.Equal(MemStatus.Misaligned, dev.LoadU16Acquire(3, out _));
        Assert.Equal(MemStatus.Misaligned, dev.StoreU16Release(5, 1));
        Assert.Equal(MemStatus.Ok, dev.StoreU16Release(6, 0xBEEF));
        Assert.Equal(MemStatus.Ok, dev.LoadU16Acquire(6, out ushort v));
        Assert.Equal(0xBEEF, v);
    }

    [Fact]
    public void AllocatorDoubleFreeThrows()
    {
        var alloc = new GuestAllocator(0x10000, 16 * GuestAllocator.PageSize);
        ulong a = alloc.Allocate(5000);
        Assert.Equal(2, alloc.UsedPages);
        alloc.Free(a, 5000);
        Assert.Equal(0, alloc.UsedPages);
        var ex = Assert.Throws<InvalidOperationException>(() => alloc.Free(a, 5000));
        Assert.Contains("double free", ex.Message);
        Assert.Equal(0, alloc.UsedPages);
    }

    [Fact]
    public void AllocatorRejectsForeignAddressesAndRunsOut()
    {
        var alloc = new GuestAllocator(0x10000, 4 * GuestAllocator.PageSize);
        Assert.Throws<ArgumentException>(() => alloc.Free(0x10010, 16));
        Assert.Throws<ArgumentException>(() => alloc.Free(0x1000, 16));
        Assert.False(alloc.TryAllocate(0, out _));
        ulong a = alloc.Allocate(3 * GuestAllocator.PageSize);
        Assert.False(alloc.TryAllocate(2 * GuestAllocator.PageSize, out _));
        Assert.Throws<InsufficientMemoryException>(() => alloc.Allocate(2 * GuestAllocator.PageSize));
        ulong b = alloc.Allocate(1);
        Assert.NotEqual(a, b);
        Assert.Equal(0, alloc.FreePages);
    }

    [Fact]
    public void AllocatorHonoursAlignmentAndNeverHandsOutAPageTwice()
    {
        var alloc = new GuestAllocator(0, 64 * GuestAllocator.PageSize);
        var taken = new HashSet<ulong>();
        var rng = new Random(7);
        var live = new List<(ulong Gpa, ulong Bytes)>();
        for (int i = 0; i < 500; i++)
        {
            if (live.Count > 0 && rng.Next(3) == 0)
            {
                var (g, n) = live[rng.Next(live.Count)];
                live.Remove((g, n));
                alloc.Free(g, n);
                for (ulong p = g; p < g + n; p += GuestAllocator.PageSize) taken.Remove(p);
                continue;
            }
            int align = 1 << rng.Next(0, 3);
            ulong bytes = (ulong)rng.Next(1, 3 * 4096);
            if (!alloc.TryAllocate(bytes, out ulong gpa, align)) continue;
            Assert.Equal(0UL, gpa % ((ulong)align * GuestAllocator.PageSize));
            ulong rounded = (bytes + 4095) & ~4095UL;
            for (ulong p = gpa; p < gpa + rounded; p += GuestAllocator.PageSize) Assert.True(taken.Add(p), $"page 0x{p:x} handed out twice");
            live.Add((gpa, rounded));
        }
        Assert.Equal(taken.Count, alloc.UsedPages);
    }
}
