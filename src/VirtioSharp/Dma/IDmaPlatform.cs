using VirtioSharp.Memory;

namespace VirtioSharp.Dma;

/// <summary>
/// What DMA ops need from the machine they run on: RAM, the guest's page allocator, the CPU's view of memory, and the
/// hooks for protected memory (share / unshare pages) and non-coherent caches (clean / invalidate / uncached).
/// </summary>
public interface IDmaPlatform
{
    GuestMemory Ram { get; }
    GuestAllocator Allocator { get; }
    ICpuMemory Cpu { get; }
    /// <summary>Makes pages readable by the host (set_memory_decrypted) or private again.</summary>
    void SetShared(ulong gpa, ulong length, bool shared);
    /// <summary>Writes dirty cache lines of the range back to RAM.</summary>
    void CacheClean(ulong gpa, ulong length);
    /// <summary>Discards cache lines of the range, dirty or not.</summary>
    void CacheInvalidate(ulong gpa, ulong length);
    /// <summary>Marks the range uncached for the CPU (coherent allocations on a non-coherent platform).</summary>
    void SetUncached(ulong gpa, ulong length, bool uncached);
}

/// <summary>A machine with plain coherent RAM and no protection: every hook is a no-op.</summary>
public sealed class PlainDmaPlatform(GuestMemory ram, GuestAllocator allocator) : IDmaPlatform
{
    public GuestMemory Ram { get; } = ram;
    public GuestAllocator Allocator { get; } = allocator;
    public ICpuMemory Cpu => Ram;
    public void SetShared(ulong gpa, ulong length, bool shared) { }
    public void CacheClean(ulong gpa, ulong length) { }
    public void CacheInvalidate(ulong gpa, ulong length) { }
    public void SetUncached(ulong gpa, ulong length, bool uncached) { }

    /// <summary>RAM of <paramref name="size"/> bytes at GPA 0, all of it handed to the allocator.</summary>
    public static PlainDmaPlatform Create(ulong size)
    {
        var ram = GuestMemory.Create(size);
        return new PlainDmaPlatform(ram, new GuestAllocator(0, size));
    }
}
