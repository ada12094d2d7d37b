using CsCheck;
using VirtioSharp.Devices.Block;
using VirtioSharp.Storage;
using VirtioSharp.Tests.Support;
using static VirtioSharp.Tests.Support.StorageRig;

namespace VirtioSharp.Tests;

/// <summary>
/// The three aio modes against one in-memory model: random batches of reads, writes (some FUA, some split in two
/// vectors, some at unaligned addresses), discards, write-zeroes (with and without UNMAP) and flushes, all of a batch
/// in flight at once. Ranges within a batch do not overlap, so the result is defined whatever the completion order.
/// </summary>
public unsafe class FileStoragePropertyTests
{
    private const int Sectors = 2048, Sector = 512, Size = Sectors * Sector;

    /// <summary>Kind: 0 write, 1 read, 2 discard, 3 write-zeroes, 4 flush.</summary>
    public sealed record Op(int Kind, int Start, int Count, bool Flag, int Seed, int Skew)
    {
        public override string ToString() => $"{"WRDZF"[Kind]}@{Start}+{Count}{(Flag ? "!" : "")}~{Skew}";
    }

    private static readonly Gen<Op> GenOp = Gen.Select(Gen.Int[0, 9], Gen.Int[0, Sectors - 1], Gen.OneOf(Gen.Int[1, 8], Gen.Int[1, 300]), Gen.Bool, Gen.Int, Gen.Int[0, 3],
        (k, s, n, f, seed, skew) => new Op(k switch { <= 3 => 0, <= 6 => 1, 7 => 2, 8 => 3, _ => 4 }, s, Math.Min(n, Sectors - s), f, seed, skew));

    private static readonly Gen<Op[][]> GenBatches = GenOp.Array[1, 10].Array[1, 8];

    [Fact]
    public void FileStorage_aio_modes_agree_with_the_model_under_random_batches()
    {
        GenBatches.Sample(b => Check(b, TmpfsDir, FileCacheMode.Writeback), iter: 25, print: Print);
    }

    [Fact]
    public void FileStorage_aio_modes_agree_with_the_model_under_O_DIRECT_with_unaligned_buffers()
    {
        GenBatches.Sample(b => Check(b, Ext4Dir, FileCacheMode.None), iter: 12, print: Print);
    }

    private static string Print(Op[][] b) => string.Join(" | ", b.Select(x => string.Join(",", x.Select(o => o.ToString()))));

    private static void Check(Op[][] batches, string dir, FileCacheMode cache)
    {
        var model = new byte[Size];
        var paths = new List<string>();
        var storages = new List<(FileStorage S, IBlockQueue Q)>();
        try
        {
            // io_uring twice: through the ring, and inline where the file system is memory-backed (tmpfs).
            foreach (var (aio, inline) in new[] { (FileAioMode.IoUring, false), (FileAioMode.IoUring, true), (FileAioMode.Threads, false), (FileAioMode.Sync, false) })
            {
                string p = NewFile(dir, Size);
                paths.Add(p);
                var s = Open(p, aio, cache, inline: inline);
                storages.Add((s, s.OpenQueue(0, 16)));
            }
            foreach (var raw in batches)
            {
                var batch = NonOverlapping(raw);
                foreach (var (s, q) in storages) RunBatch(q, batch, model, cache, s.Aio);
                foreach (var o in batch) Apply(model, o);
            }
            foreach (var (s, q) in storages) { q.Dispose(); s.Dispose(); }
            storages.Clear();
            for (int i = 0; i < paths.Count; i++)
                Assert.True(File.ReadAllBytes(paths[i]).AsSpan().SequenceEqual(model), $"image of aio mode #{i} differs from the model");
        }
        finally
        {
            foreach (var (s, q) in storages) { q.Dispose(); s.Dispose(); }
            foreach (var p in paths) Delete(p);
        }
    }

    private static Op[] NonOverlapping(Op[] ops)
    {
        var kept = new List<Op>();
        foreach (var o in ops)
            if (o.Kind == 4 || kept.All(k => k.Kind == 4 || o.Start + o.Count <= k.Start || k.Start + k.Count <= o.Start)) kept.Add(o);
        return [.. kept];
    }

    private static void Apply(byte[] model, Op o)
    {
        var range = model.AsSpan(o.Start * Sector, o.Count * Sector);
        if (o.Kind == 0) Data(o).CopyTo(range);
        else if (o.Kind is 2 or 3) range.Clear();
    }

    private static byte[] Data(Op o) => Pattern(o.Count * Sector, o.Seed);

    private static void RunBatch(IBlockQueue q, Op[] batch, byte[] model, FileCacheMode cache, FileAioMode aio)
    {
        var bufs = new NativeBuffer?[batch.Length];
        using var vecs = new NativeBuffer(batch.Length * 2 * sizeof(IoVec));
        var v = (IoVec*)vecs.Pointer;
        var reqs = new BlockRequest[batch.Length];
        try
        {
            for (int i = 0; i < batch.Length; i++)
            {
                var o = batch[i];
                ulong off = (ulong)(o.Start * Sector), len = (ulong)(o.Count * Sector);
                ulong tag = (ulong)i;
                switch (o.Kind)
                {
                    case 0 or 1:
                        var b = bufs[i] = new NativeBuffer((int)len, cache == FileCacheMode.None ? o.Skew : 0);
                        if (o.Kind == 0) Data(o).CopyTo(b.Span); else b.Span.Fill(0xEE);
                        int n = 1;
                        // Two vectors split inside a sector (an unaligned length under O_DIRECT) or at a sector boundary.
                        int cut = o.Count > 1 ? (o.Count / 2) * Sector - (o.Skew == 3 ? 100 : 0) : 0;
                        if (o.Flag && cut > 0)
                        {
                            v[2 * i] = new IoVec((nint)b.Pointer, (nuint)cut);
                            v[2 * i + 1] = new IoVec((nint)b.Pointer + cut, (nuint)((int)len - cut));
                            n = 2;
                        }
                        else v[2 * i] = new IoVec((nint)b.Pointer, (nuint)len);
                        var flags = o.Kind == 0 && o.Seed % 3 == 0 ? BlockRequestFlags.Fua : BlockRequestFlags.None;
                        reqs[i] = Rw(o.Kind == 0 ? BlockOp.Write : BlockOp.Read, off, &v[2 * i], n, tag, flags);
                        break;
                    case 2: reqs[i] = Range(BlockOp.Discard, off, len, tag); break;
                    case 3: reqs[i] = Range(BlockOp.WriteZeroes, off, len, tag, o.Flag ? BlockRequestFlags.Unmap : 0); break;
                    default: reqs[i] = new BlockRequest { Op = BlockOp.Flush, Tag = tag }; break;
                }
            }
            var done = RunAll(q, reqs);
            Assert.Equal(batch.Length, done.Count);
            foreach (var c in done) Assert.True(c.Error == 0, $"{aio}: {batch[(int)c.Tag]} failed with errno {c.Error}");
            for (int i = 0; i < batch.Length; i++)
                if (batch[i].Kind == 1)
                    Assert.True(bufs[i]!.Span.SequenceEqual(model.AsSpan(batch[i].Start * Sector, batch[i].Count * Sector)), $"{aio}: {batch[i]} read other data");
        }
        finally
        {
            foreach (var b in bufs) b?.Dispose();
        }
    }
}
