namespace VirtioSharp.Cli;

/// <summary>
/// "[3/17] name" (or "[3] name" when the total is not known) on one rewritten terminal line while a long command works through its items, cleared when done. Only
/// when stderr is this process's terminal: a redirected stderr (scripts, tests, logs) gets nothing.
/// </summary>
internal sealed class ProgressLine(TextWriter? terminal, string label, int total) : IDisposable
{
    private int _done, _width;

    /// <summary>A progress line on <paramref name="stderr"/> if it is the console's terminal, else one that prints nothing.</summary>
    public static ProgressLine For(TextWriter stderr, string label, int total) =>
        new(ReferenceEquals(stderr, Console.Error) && !Console.IsErrorRedirected ? stderr : null, label, total);

    /// <summary>Passes <paramref name="items"/> through, showing each one's name as it is produced.</summary>
    public IEnumerable<T> Each<T>(IEnumerable<T> items, Func<T, string> name)
    {
        foreach (var item in items)
        {
            Show(name(item));
            yield return item;
        }
    }

    private void Show(string name)
    {
        if (terminal is null) return;
        ++_done;
        string text = total > 0 ? $"{label} [{_done}/{total}] {name}" : $"{label} [{_done}] {name}";
        terminal.Write("\r" + text.PadRight(_width));
        _width = text.Length;
        terminal.Flush();
    }

    /// <summary>Clears the line.</summary>
    public void Dispose()
    {
        if (terminal is null || _width == 0) return;
        terminal.Write("\r" + new string(' ', _width) + "\r");
        terminal.Flush();
    }
}
