using VirtioSharp.Memory;

namespace VirtioSharp.Dma;

/// <summary>A machine with plain coherent RAM and no protection: every hook is a no-op.</summary>
public sealed class PlainDmaPlatform(GuestMemory ram, GuestAllocator allocator) : IDmaPlatform
{
    /// <inheritdoc/>
    public GuestMemory Ram { get; } = ram;
    /// <inheritdoc/>
    public GuestAllocator Allocator { get; } = allocator;
    /// <inheritdoc/>
    public ICpuMemory Cpu => Ram;
    /// <inheritdoc/>
    public void SetShared(ulong gpa, ulong length, bool shared) { }
    /// <inheritdoc/>
    public void CacheClean(ulong gpa, ulong length) { }
    /// <inheritdoc/>
    public void CacheInvalidate(ulong gpa, ulong length) { }
    /// <inheritdoc/>
    public void SetUncached(ulong gpa, ulong length, bool uncached) { }

    /// <summary>RAM of <paramref name="size"/> bytes at GPA 0, all of it handed to the allocator.</summary>
    public static PlainDmaPlatform Create(ulong size)
    {
        var ram = GuestMemory.Create(size);
        return new PlainDmaPlatform(ram, new GuestAllocator(0, size));
    }
}
