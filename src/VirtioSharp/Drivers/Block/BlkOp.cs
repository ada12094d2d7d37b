using VirtioSharp.Devices.Block;

namespace VirtioSharp.Drivers.Block;

/// <summary>One block operation; may be carried by several virtio requests after splitting.</summary>
public sealed class BlkOp
{
    private readonly TaskCompletionSource<BlkStatus> _tcs = new(TaskCreationOptions.RunContinuationsAsynchronously);
    internal int PartsLeft;
    internal BlkStatus Worst = BlkStatus.Ok;
    internal Action<BlkOp>? OnDone;

    /// <summary>Virtio requests the operation was split into.</summary>
    public int Parts { get; internal set; }
    /// <summary>Whether every part has completed.</summary>
    public bool IsCompleted => _tcs.Task.IsCompleted;
    /// <summary>The worst status of the parts; throws while the operation is in flight.</summary>
    public BlkStatus Status => _tcs.Task.IsCompleted ? _tcs.Task.Result : throw new InvalidOperationException("operation still in flight");
    /// <summary>Completes with the worst status once every part completed.</summary>
    public Task<BlkStatus> Task => _tcs.Task;

    internal void PartDone(BlkStatus s)
    {
        if (s > Worst) Worst = s;
        if (--PartsLeft == 0)
        {
            OnDone?.Invoke(this);
            _tcs.TrySetResult(Worst);
        }
    }

    internal void Fail(BlkStatus s)
    {
        OnDone?.Invoke(this);
        _tcs.TrySetResult(s);
    }
}
