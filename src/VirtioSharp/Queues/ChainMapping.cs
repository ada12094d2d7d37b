using System.Runtime.CompilerServices;
using VirtioSharp.Dma;

namespace VirtioSharp.Queues;

/// <summary>The driver-side step both ring layouts share: map every segment of a chain, or none of them.</summary>
internal static class ChainMapping
{
    /// <summary>
    /// Maps readable segments to-device and writable ones from-device into <paramref name="maps"/> (grown and kept
    /// per head/id, so steady state allocates nothing). On a failure every mapping already made is undone.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static DmaStatus MapAll(IDmaOps dma, ReadOnlySpan<BufferSegment> readable, ReadOnlySpan<BufferSegment> writable,
        ref DmaMapping[]? maps, out uint writableBytes)
    {
        int total = readable.Length + writable.Length;
        if (maps is null || maps.Length < total) maps = new DmaMapping[Math.Max(total, 4)];
        writableBytes = 0;
        for (int i = 0; i < total; i++)
        {
            bool w = i >= readable.Length;
            var seg = w ? writable[i - readable.Length] : readable[i];
            var st = dma.Map(seg.Gpa, seg.Length, w ? DmaDirection.FromDevice : DmaDirection.ToDevice, out maps[i]);
            if (st != DmaStatus.Ok)
            {
                for (int j = i - 1; j >= 0; j--) dma.Unmap(maps[j]);
                return st;
            }
            if (w) writableBytes += seg.Length;
        }
        return DmaStatus.Ok;
    }

    /// <summary>
    /// Premapped buffers (Linux's premapped virtqueue mode): checks that every mapping allows what the chain asks of it
    /// (readable ones to-device or bidirectional, writable ones from-device or bidirectional; none empty), copies the
    /// records into <paramref name="maps"/> — what the queue later trusts is its own copy — and syncs each for the device
    /// (bounce ops copy the CPU's data into the pool). Returns <see cref="DmaStatus.BadAddress"/> for a mapping that does
    /// not fit its place, and nothing is synced then.
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static DmaStatus UsePremapped(IDmaOps dma, ReadOnlySpan<DmaMapping> readable, ReadOnlySpan<DmaMapping> writable,
        ref DmaMapping[]? maps, out uint writableBytes)
    {
        int total = readable.Length + writable.Length;
        if (maps is null || maps.Length < total) maps = new DmaMapping[Math.Max(total, 4)];
        writableBytes = 0;
        for (int i = 0; i < total; i++)
        {
            bool w = i >= readable.Length;
            var m = w ? writable[i - readable.Length] : readable[i];
            if (m.Length == 0) return DmaStatus.Empty;
            if (w ? !m.DeviceWrites : !m.DeviceReads) return DmaStatus.BadAddress;
            maps[i] = m;
            if (w) writableBytes += m.Length;
        }
        for (int i = 0; i < total; i++) dma.SyncForDevice(maps[i]);
        return DmaStatus.Ok;
    }

    /// <summary>
    /// A used or detached chain gives its mappings back: unmapped (the queue mapped them) or, premapped, synced for the
    /// CPU where the device may have written (the driver unmaps its pool itself).
    /// </summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static void Release(IDmaOps dma, DmaMapping[] maps, int count, bool premapped)
    {
        if (!premapped)
        {
            for (int i = 0; i < count; i++) dma.Unmap(maps[i]);
            return;
        }
        for (int i = 0; i < count; i++)
            if (maps[i].DeviceWrites) dma.SyncForCpu(maps[i]);
    }
}
