using VirtioSharp.Memory;

namespace VirtioSharp.Dma;

/// <summary>
/// What DMA ops need from the machine they run on: RAM, the guest's page allocator, the CPU's view of memory, and the
/// hooks for protected memory (share / unshare pages) and non-coherent caches (clean / invalidate / uncached).
/// </summary>
public interface IDmaPlatform
{
    /// <summary>Guest RAM itself (what the device side reaches).</summary>
    GuestMemory Ram { get; }
    /// <summary>The guest's page allocator (rings, bounce pools).</summary>
    GuestAllocator Allocator { get; }
    /// <summary>The CPU's view of memory, which on a non-coherent platform may be a cache in front of RAM.</summary>
    ICpuMemory Cpu { get; }
    /// <summary>Makes pages readable by the host (set_memory_decrypted) or private again.</summary>
    void SetShared(ulong gpa, ulong length, bool shared);
    /// <summary>Writes dirty cache lines of the range back to RAM.</summary>
    void CacheClean(ulong gpa, ulong length);
    /// <summary>Discards cache lines of the range, dirty or not.</summary>
    void CacheInvalidate(ulong gpa, ulong length);
    /// <summary>Marks the range uncached for the CPU (coherent allocations on a non-coherent platform).</summary>
    void SetUncached(ulong gpa, ulong length, bool uncached);

    /// <summary>
    /// Allocates pages the host may reach (bounce pools, rings of a protected guest) and shares them. The default takes
    /// them from <see cref="Allocator"/>; a platform whose shared memory is a separate window (a real protected guest,
    /// where the host can map nothing else) allocates from that window.
    /// </summary>
    bool TryAllocateShared(ulong size, out ulong gpa)
    {
        if (!Allocator.TryAllocate(size, out gpa)) return false;
        SetShared(gpa, size, true);
        return true;
    }

    /// <summary>Makes pages from <see cref="TryAllocateShared"/> private again and frees them.</summary>
    void FreeShared(ulong gpa, ulong size)
    {
        SetShared(gpa, size, false);
        Allocator.Free(gpa, size);
    }
}
