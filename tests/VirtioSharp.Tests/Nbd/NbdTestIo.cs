using System.Runtime.InteropServices;
using VirtioSharp.Devices.Block;

namespace VirtioSharp.Tests.Nbd;

/// <summary>
/// Drives an <see cref="IBlockQueue"/> like the device does (submit, kick, wait on the completion eventfd, reap) with
/// buffers in native memory split over several iovecs, and checks each tag completes exactly once.
/// </summary>
internal sealed unsafe class NbdTestIo(IBlockQueue q) : IDisposable
{
    private readonly List<nint> _allocations = [];
    private ulong _nextTag = 1;

    public IBlockQueue Queue => q;

    /// <summary>A buffer of <paramref name="length"/> bytes as <paramref name="pieces"/> uneven vectors.</summary>
    public nint Buffer(int length, int pieces, out IoVec* vectors, out int count)
    {
        nint data = (nint)NativeMemory.AllocZeroed((nuint)Math.Max(length, 1));
        var vecs = (IoVec*)NativeMemory.AllocZeroed((nuint)(sizeof(IoVec) * Math.Max(pieces, 1)));
        _allocations.Add(data);
        _allocations.Add((nint)vecs);
        count = 0;
        int at = 0;
        for (int i = 0; i < pieces && at < length; i++)
        {
            int len = i == pieces - 1 ? length - at : Math.Max(1, (length - at) / (pieces - i) + (i % 2 == 0 ? 7 : -7));
            len = Math.Clamp(len, 1, length - at);
            vecs[count++] = new IoVec(data + at, (nuint)len);
            at += len;
        }
        vectors = vecs;
        return data;
    }

    public static Span<byte> Span(nint data, int length) => new((void*)data, length);

    public BlockRequest Read(ulong offset, int length, out nint data, int pieces = 3)
    {
        var d = Buffer(length, pieces, out var v, out int n);
        data = d;
        return new BlockRequest { Op = BlockOp.Read, Offset = offset, Length = (ulong)length, Vectors = v, VectorCount = n, Tag = _nextTag++ };
    }

    public BlockRequest Write(ulong offset, ReadOnlySpan<byte> bytes, BlockRequestFlags flags = 0, int pieces = 3)
    {
        var d = Buffer(bytes.Length, pieces, out var v, out int n);
        bytes.CopyTo(Span(d, bytes.Length));
        return new BlockRequest { Op = BlockOp.Write, Flags = flags, Offset = offset, Length = (ulong)bytes.Length, Vectors = v, VectorCount = n, Tag = _nextTag++ };
    }

    public BlockRequest Other(BlockOp op, ulong offset = 0, ulong length = 0, BlockRequestFlags flags = 0) =>
        new() { Op = op, Flags = flags, Offset = offset, Length = length, Tag = _nextTag++ };

    /// <summary>Submits, kicks once, and reaps until every request completed; returns each tag's errno.</summary>
    public Dictionary<ulong, int> Run(IReadOnlyList<BlockRequest> requests, int timeoutMs = 20_000)
    {
        foreach (var r in requests) q.Submit(r);
        q.Kick();
        return Collect(requests.Select(r => r.Tag).ToHashSet(), timeoutMs);
    }

    public int RunOne(BlockRequest r, int timeoutMs = 20_000) => Run([r], timeoutMs)[r.Tag];

    public Dictionary<ulong, int> Collect(HashSet<ulong> tags, int timeoutMs)
    {
        var result = new Dictionary<ulong, int>();
        Span<BlockCompletion> done = stackalloc BlockCompletion[64];
        long deadline = Environment.TickCount64 + timeoutMs;
        while (result.Count < tags.Count)
        {
            if (Environment.TickCount64 > deadline)
                throw new TimeoutException($"{tags.Count - result.Count} of {tags.Count} requests did not complete in {timeoutMs} ms");
            q.WaitForCompletions(100);
            int n = q.Reap(done);
            for (int i = 0; i < n; i++)
            {
                var c = done[i];
                Assert.True(tags.Contains(c.Tag), $"completion for unknown tag {c.Tag}");
                Assert.True(result.TryAdd(c.Tag, c.Error), $"tag {c.Tag} completed twice");
            }
        }
        return result;
    }

    /// <summary>Reaps whatever arrives within <paramref name="ms"/> (there should be nothing).</summary>
    public int Stray(int ms)
    {
        Span<BlockCompletion> done = stackalloc BlockCompletion[16];
        int total = 0;
        long deadline = Environment.TickCount64 + ms;
        while (Environment.TickCount64 < deadline)
        {
            q.WaitForCompletions(20);
            total += q.Reap(done);
        }
        return total;
    }

    public void Dispose()
    {
        foreach (var p in _allocations) NativeMemory.Free((void*)p);
        _allocations.Clear();
    }
}
