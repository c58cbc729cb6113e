package probe

// ListsLink is listsLink, for the black-box tests.
var ListsLink = listsLink
