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
}
