namespace VirtioSharp.Cli.Daemon;

/// <summary>Several things released together (e.g. a command's meters), in order.</summary>
internal sealed class DisposableGroup(IEnumerable<IDisposable> items) : IDisposable
{
    private readonly IDisposable[] _items = [.. items];

    public void Dispose()
    {
        foreach (var d in _items) d.Dispose();
    }
}
