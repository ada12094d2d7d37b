using System.Runtime.InteropServices;
using VirtioSharp.Devices.Block;

namespace VirtioSharp.Storage;

/// <summary>
/// aio=sync: each request runs inside <see cref="FileQueue.Submit"/> with preadv2/pwritev2 on the queue's own thread,
/// so every request has completed when Kick returns (<see cref="CompletionEvent"/> is null).
/// </summary>
internal sealed class SyncFileQueue : FileQueue
{
    private readonly AlignedBuffer? _bounce;   // one per queue: requests run one at a time

    public SyncFileQueue(FileTarget target, int depth, int bounceSize, Action<FileQueue> onDispose) : base(target, depth, onDispose)
    {
        if (target.Direct)
            _bounce = new AlignedBuffer((nuint)Math.Max(bounceSize, (int)target.OffsetAlign) & ~(nuint)(target.OffsetAlign - 1), target.MemAlign);
    }

    public override SafeHandle? CompletionEvent => null;
    public override FileAioMode Mode => FileAioMode.Sync;

    protected override void Start(int slot)
    {
        ref var s = ref Table.Slots[slot];
        FinishImmediately(slot, Target.Execute(s.Request, s.Bounced, 0, _bounce));
    }

    public override void Kick() { }

    public override int Reap(Span<BlockCompletion> completions)
    {
        int n = 0;
        ReapImmediate(completions, ref n);
        return n;
    }

    public override bool WaitForCompletions(int timeoutMs) => HasImmediate;

    protected override void Release()
    {
        Drain(TimeSpan.FromSeconds(1));   // only bookkeeping: nothing runs outside Submit
        _bounce?.Dispose();
    }
}
