using VirtioSharp.Devices.Block;
using VirtioSharp.Memory;
using VirtioSharp.Queues;

namespace VirtioSharp.Devices;

/// <summary>
/// Turns a chain's buffers into host vectors for zero-copy I/O (<see cref="IDeviceMemory.MapForIo"/>), shared by the
/// devices that hand guest memory to the host (blk storage, net ports). The arrays are pinned: the host uses their
/// addresses while the I/O runs.
/// </summary>
internal static class HostVectors
{
    /// <summary>
    /// Translates <paramref name="bytes"/> of <paramref name="segs"/> (after <paramref name="skip"/>) into vectors
    /// appended at <paramref name="count"/>, each piece checked for <paramref name="access"/>; pieces adjacent in host
    /// memory merge. The array grows (pinned) as needed up to <paramref name="maxVectors"/>; more pieces than that give
    /// <see cref="MemStatus.NoDirectAccess"/>, as a space that only copies does: the caller takes its copy path.
    /// </summary>
    public static MemStatus Map<TMem>(TMem mem, ReadOnlySpan<ChainSegment> segs, ulong skip, ulong bytes, Access access,
        ref IoVec[]? vectors, int maxVectors, ref int count) where TMem : struct, IDeviceMemory
    {
        foreach (var seg in segs)
        {
            if (bytes == 0) break;
            ulong addr = seg.Addr, len = seg.Length;
            if (skip >= len) { skip -= len; continue; }
            addr += skip; len -= skip; skip = 0;
            len = Math.Min(len, bytes);
            while (len > 0)
            {
                var st = mem.MapForIo(addr, len, access, out nint host, out ulong contig);
                if (st != MemStatus.Ok) return st;
                if (contig == 0) return MemStatus.Unmapped;
                if (count > 0 && vectors![count - 1].Base + (nint)vectors[count - 1].Length == host)
                    vectors[count - 1].Length += (nuint)contig;
                else
                {
                    if (count == maxVectors) return MemStatus.NoDirectAccess;
                    Ensure(ref vectors, count + 1);
                    vectors![count++] = new IoVec(host, (nuint)contig);
                }
                addr += contig; len -= contig; bytes -= contig;
            }
        }
        return bytes == 0 ? MemStatus.Ok : MemStatus.Unmapped;
    }

    /// <summary>Makes <paramref name="vectors"/> hold at least <paramref name="n"/> entries (pinned; doubling, at least 8).</summary>
    public static void Ensure(ref IoVec[]? vectors, int n)
    {
        if (vectors is not null && vectors.Length >= n) return;
        var grown = GC.AllocateArray<IoVec>(Math.Max(n, Math.Max(8, (vectors?.Length ?? 0) * 2)), pinned: true);
        vectors?.AsSpan().CopyTo(grown);
        vectors = grown;
    }
}
