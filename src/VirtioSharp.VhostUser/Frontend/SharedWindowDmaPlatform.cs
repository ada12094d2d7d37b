using VirtioSharp.Dma;
using VirtioSharp.Memory;

namespace VirtioSharp.VhostUser.Frontend;

/// <summary>
/// The DMA platform of a front-end that shares only a window of its memory (a real protected guest, as SEV, TDX or
/// s390 PV guests run: the host can map nothing but what the guest shared). Private memory stays in a memfd the
/// back-end never receives; rings and the bounce pool come from the window, which is the only region in the memory
/// table. Sharing any other page is a bug and throws, so a test fails the moment private memory would be shared.
/// </summary>
public sealed class SharedWindowDmaPlatform : IDmaPlatform
{
    private readonly GuestAllocator _window;

    /// <summary>A platform over <paramref name="ram"/> whose private pages come from <paramref name="privateAllocator"/>
    /// and whose window <paramref name="windowBase"/> + <paramref name="windowSize"/> is handed out by the shared allocations.</summary>
    public SharedWindowDmaPlatform(GuestMemory ram, GuestAllocator privateAllocator, ulong windowBase, ulong windowSize)
    {
        Ram = ram;
        Allocator = privateAllocator;
        WindowBase = windowBase;
        WindowSize = windowSize;
        _window = new GuestAllocator(windowBase, windowSize);
    }

    /// <inheritdoc/>
    public GuestMemory Ram { get; }
    /// <summary>The private allocator: payloads and the driver's own structures (the back-end cannot map them).</summary>
    public GuestAllocator Allocator { get; }
    /// <inheritdoc/>
    public ICpuMemory Cpu => Ram;
    /// <summary>First guest-physical address of the shared window.</summary>
    public ulong WindowBase { get; }
    /// <summary>Bytes in the shared window.</summary>
    public ulong WindowSize { get; }
    /// <summary>Bytes of the window currently allocated (rings, indirect tables, the bounce pool).</summary>
    public ulong WindowBytesInUse => (ulong)_window.UsedPages * GuestAllocator.PageSize;

    /// <summary>True if the whole range lies inside the shared window.</summary>
    public bool InWindow(ulong gpa, ulong length) => gpa >= WindowBase && length <= WindowSize && gpa - WindowBase <= WindowSize - length;

    /// <summary>Pages of the window are shared already; any other page is private for good and sharing it throws.</summary>
    public void SetShared(ulong gpa, ulong length, bool shared)
    {
        if (shared && !InWindow(gpa, length))
            throw new InvalidOperationException(
                $"0x{gpa:x}+0x{length:x} is private memory: this front-end shares only its window 0x{WindowBase:x}+0x{WindowSize:x} " +
                "(rings and bounce pool); allocate host-visible memory with TryAllocateShared");
    }

    /// <inheritdoc/>
    public bool TryAllocateShared(ulong size, out ulong gpa) => _window.TryAllocate(size, out gpa);

    /// <inheritdoc/>
    public void FreeShared(ulong gpa, ulong size) => _window.Free(gpa, size);

    // Shared memory between processes on one host is coherent: no cache maintenance.
    /// <inheritdoc/>
    public void CacheClean(ulong gpa, ulong length) { }
    /// <inheritdoc/>
    public void CacheInvalidate(ulong gpa, ulong length) { }
    /// <inheritdoc/>
    public void SetUncached(ulong gpa, ulong length, bool uncached) { }
}
