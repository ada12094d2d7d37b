using System.Runtime.InteropServices;

namespace VirtioSharp.Devices.Block;

/// <summary>The queue of a <see cref="SyncBlockStorage"/>: runs each request as it is submitted and keeps its completion.</summary>
internal sealed unsafe class SyncBlockQueue(IBlockBackend backend, int depth) : IBlockQueue
{
    private readonly BlockCompletion[] _done = new BlockCompletion[Math.Max(depth, 1)];
    private int _head, _count;

    public SafeHandle? CompletionEvent => null;
    public int Depth => _done.Length;
    public int MaxVectors => 1024;

    public void Submit(in BlockRequest r)
    {
        if (_count == _done.Length) throw new InvalidOperationException($"more than {_done.Length} requests submitted before they were reaped");
        int error = 0;
        try { Run(r); }
        catch (IOException e) { error = e.HResult is > 0 and < 4096 ? e.HResult : BlockCompletion.IoError; }
        catch (NotSupportedException) { error = BlockCompletion.NotSupported; }
        _done[(_head + _count++) % _done.Length] = new BlockCompletion(r.Tag, error);
    }

    private void Run(in BlockRequest r)
    {
        ulong off = r.Offset;
        switch (r.Op)
        {
            case BlockOp.Read:
                for (int i = 0; i < r.VectorCount; i++)
                {
                    var v = r.Vectors[i];
                    backend.Read(off, new Span<byte>((void*)v.Base, checked((int)v.Length)));
                    off += v.Length;
                }
                break;
            case BlockOp.Write:
                for (int i = 0; i < r.VectorCount; i++)
                {
                    var v = r.Vectors[i];
                    backend.Write(off, new ReadOnlySpan<byte>((void*)v.Base, checked((int)v.Length)));
                    off += v.Length;
                }
                if ((r.Flags & BlockRequestFlags.Fua) != 0) backend.Flush();
                break;
            case BlockOp.Flush: backend.Flush(); break;
            case BlockOp.Discard: backend.Discard(r.Offset, r.Length); break;
            case BlockOp.WriteZeroes: backend.WriteZeroes(r.Offset, r.Length); break;
            default: throw new NotSupportedException();
        }
    }

    public void Kick() { }

    public int Reap(Span<BlockCompletion> completions)
    {
        int n = Math.Min(completions.Length, _count);
        for (int i = 0; i < n; i++)
        {
            completions[i] = _done[_head];
            _head = (_head + 1) % _done.Length;
        }
        _count -= n;
        return n;
    }

    public bool WaitForCompletions(int timeoutMs) => _count > 0;

    public void Dispose() { }
}
